//! `strata-loadgen sink`: an HTTP server that reads every request body and answers 204, storing
//! nothing. Pointing `http` at it measures the load generator plus the HTTP stack, the ceiling
//! no real server can be measured above (docs/loadgen.md).

use anyhow::Context as _;
use axum::http::StatusCode;

use crate::cli::SinkArgs;

async fn swallow(body: axum::body::Bytes) -> StatusCode {
    // Reading the body is the point: a server must receive every byte before it can answer.
    std::hint::black_box(body.len());
    StatusCode::NO_CONTENT
}

pub async fn run(args: SinkArgs) -> anyhow::Result<i32> {
    let listener =
        tokio::net::TcpListener::bind(&args.addr).await.with_context(|| format!("binding {}", args.addr))?;
    let addr = listener.local_addr()?;
    if let Some(p) = &args.ready_file {
        std::fs::write(p, format!("{{\"http\": \"{addr}\"}}\n"))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    eprintln!("sink listening on http://{addr} (exits after {:?})", args.max_lifetime);
    let app = axum::Router::new().fallback(swallow).layer(axum::extract::DefaultBodyLimit::max(1 << 30));
    let lifetime = args.max_lifetime;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = tokio::time::sleep(lifetime) => {}
            }
        })
        .await
        .context("serving")?;
    Ok(0)
}
