//! `strata`: parse the command line and configuration, then hand over to the library
//! (`strata_server::Server`) or run a client command (`strata_cli`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use strata_auth::tokens::{self, TokenSpec};
use strata_cli::{Cli, Command, ConfigArgs, ServeArgs, TokenCommand};
use strata_server::config::{self, Config, LogFormat, Override};
use strata_server::{Listeners, Server};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Token { command }) => token(command),
        Some(Command::Query(a)) => strata_cli::query::run(a),
        Some(Command::Write(a)) => strata_cli::write::run_write(a),
        Some(Command::Import(a)) => strata_cli::write::run_import(a),
        Some(Command::Export(a)) => strata_cli::export::run(a),
        Some(Command::Inspect(a)) => strata_cli::inspect::run(a),
        Some(Command::Backup(a)) => strata_cli::backup::run_backup(a),
        Some(Command::Restore(a)) => strata_cli::backup::run_restore(a),
        Some(Command::Device(a)) => strata_cli::device::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes as one line, `outer: inner: innermost`, skipping a cause whose
/// text its outer error already printed (many error types say `what: {source}` and also
/// expose that source, which would print it twice).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn env_vars() -> Vec<(String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect()
}

fn load_config(args: &ConfigArgs, overrides: &[Override]) -> anyhow::Result<Config> {
    Ok(Config::load(args.config.as_deref(), env_vars(), overrides)?)
}

fn init_tracing(config: &Config) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => EnvFilter::try_new(f).context("RUST_LOG")?,
        _ => EnvFilter::try_new(&config.log.level).context("log.level")?,
    };
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tune_allocator();
    let overrides = args.overrides().map_err(anyhow::Error::msg)?;
    let config = load_config(&args.config, &overrides)?;
    init_tracing(&config)?;
    for var in config::unknown_env_vars(env_vars()) {
        tracing::warn!(var, "ignoring environment variable: it names no configuration key");
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    runtime.block_on(async move {
        let listeners = Listeners::bind(&config)?;
        let server = Server::start(config, listeners).await?;
        println!("HTTP listening on {}://{}", server.scheme(), server.http_addr());
        if let Some(a) = server.mqtt_addr() {
            println!("MQTT listening on mqtt://{a}");
        }
        if let Some(a) = server.mqtt_tls_addr() {
            println!("MQTT listening on mqtts://{a}");
        }
        if let Some(path) = &args.ready_file {
            write_ready_file(path, &server).with_context(|| format!("--ready-file {}", path.display()))?;
        }
        server.wait(shutdown_signal()).await?;
        anyhow::Ok(())
    })
}

/// `{"http": "127.0.0.1:8086", "scheme": "http"}`, written to a temporary file and renamed so a
/// reader never sees half of it.
fn write_ready_file(path: &Path, server: &Server) -> std::io::Result<()> {
    let mut body = serde_json::json!({ "http": server.http_addr().to_string(), "scheme": server.scheme() });
    if let Some(a) = server.mqtt_addr() {
        body["mqtt"] = a.to_string().into();
    }
    if let Some(a) = server.mqtt_tls_addr() {
        body["mqtt_tls"] = a.to_string().into();
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body.to_string())?;
    std::fs::rename(&tmp, path)
}

/// Keeps the server's resident memory close to what it really holds (docs/architecture.md,
/// "Memory"). glibc's defaults suit short programs, not a server that allocates request-sized
/// buffers (about 1 MiB per 5,000-line batch) on many threads: its mmap threshold rises after
/// the first large free, so later big buffers come from the heap and their pages stay resident
/// after use, and every thread may get its own arena (8 per core) that keeps its free memory.
/// A fixed 256 KiB threshold returns big buffers to the kernel when they are freed, and one
/// arena per core bounds the free memory kept. Measured on the e2e ingest (3 x 1.44 M lines at
/// 1, 4, 16 connections): peak RSS 208 -> 161 MiB. `GLIBC_TUNABLES` set by the operator wins.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("GLIBC_TUNABLES").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        // SAFETY: mallopt only changes allocator parameters; called before any other thread
        // exists (the tokio runtime is built after this).
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
            libc::mallopt(libc::M_ARENA_MAX, cores.clamp(2, 64) as libc::c_int);
        }
    }
}

/// Completes on the first SIGINT or SIGTERM; a second one exits at once.
async fn shutdown_signal() {
    wait_for_signal().await;
    tracing::info!("shutdown requested (send the signal again to exit immediately)");
    tokio::spawn(async {
        wait_for_signal().await;
        tracing::warn!("second signal: exiting without a clean shutdown");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create(a) => {
            let config = load_config(&a.config, &a.config.overrides().map_err(anyhow::Error::msg)?)?;
            let spec = TokenSpec {
                description: a.description,
                admin: a.admin,
                databases: a.databases,
                read: a.read,
                write: a.write,
                delete: a.delete,
            };
            let path = config.tokens_file();
            let (token, rec) = tokens::create(&path, &spec)?;
            // The token alone on stdout, so scripts can capture it; the rest on stderr.
            println!("{token}");
            eprintln!(
                "created token {} ({}) in {}; store it now: it cannot be shown again",
                rec.id,
                scope(&rec),
                path.display()
            );
        }
        TokenCommand::List { config, json } => {
            let cfg = load_config(&config, &config.overrides().map_err(anyhow::Error::msg)?)?;
            let list = tokens::load(&cfg.tokens_file())?;
            if json {
                let items: Vec<_> = list
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "id": t.id, "description": t.description, "admin": t.admin,
                            "databases": t.databases, "read": t.read, "write": t.write, "delete": t.delete, "created": t.created,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                println!("{:<16}  {:<28}  {:<20}  DESCRIPTION", "ID", "SCOPE", "CREATED");
                for t in &list {
                    println!("{:<16}  {:<28}  {:<20}  {}", t.id, scope(t), t.created, t.description);
                }
            }
        }
        TokenCommand::Revoke { config, id } => {
            let cfg = load_config(&config, &config.overrides().map_err(anyhow::Error::msg)?)?;
            let rec = tokens::revoke(&cfg.tokens_file(), &id)?;
            println!("revoked token {} ({})", rec.id, scope(&rec));
        }
    }
    Ok(())
}

fn scope(t: &tokens::TokenRecord) -> String {
    if t.admin {
        return "admin".into();
    }
    let perms: Vec<&str> = [(t.read, "read"), (t.write, "write"), (t.delete, "delete")]
        .iter()
        .filter_map(|(on, name)| on.then_some(*name))
        .collect();
    let perms = if perms.is_empty() { "none".to_owned() } else { perms.join("+") };
    format!("{perms} on {}", t.databases.join(","))
}
