//! What the client commands (`query`, `write`, `import`, `export`) share: where the server is,
//! the token, and a blocking HTTP client that maps error responses to readable messages.

use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use reqwest::blocking::{Client, RequestBuilder, Response};

/// How to reach a running server.
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// Server URL.
    #[arg(
        long,
        env = "STRATA_URL",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8086",
        value_name = "URL"
    )]
    pub url: String,
    /// API token, sent as `Authorization: Token ...`. Prefer the
    /// environment: a flag is visible to other users in the process list.
    #[arg(long, env = "STRATA_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Request timeout, e.g. 30s or 5m.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

/// A configured client for one server.
#[derive(Debug, Clone)]
pub struct Remote {
    client: Client,
    base: String,
    token: Option<String>,
}

impl Remote {
    pub fn new(args: &RemoteArgs) -> anyhow::Result<Remote> {
        let client = Client::builder().timeout(args.timeout).build().context("building the HTTP client")?;
        Ok(Remote { client, base: args.url.trim_end_matches('/').to_owned(), token: args.token.clone() })
    }

    fn auth(&self, rb: RequestBuilder) -> RequestBuilder {
        match &self.token {
            Some(t) => rb.header("Authorization", format!("Token {t}")),
            None => rb,
        }
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.auth(self.client.get(format!("{}{path}", self.base)))
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.auth(self.client.post(format!("{}{path}", self.base)))
    }

    /// `/query` with `q`, `db` and `epoch` (nanoseconds unless `epoch` says otherwise);
    /// returns the parsed JSON body of a 200.
    pub fn query(&self, q: &str, db: Option<&str>, epoch: Option<&str>) -> anyhow::Result<serde_json::Value> {
        let mut params = vec![("q", q)];
        if let Some(db) = db {
            params.push(("db", db));
        }
        if let Some(e) = epoch {
            params.push(("epoch", e));
        }
        let resp =
            self.post("/query").form(&params).send().with_context(|| format!("POST {}/query", self.base))?;
        let resp = check(resp)?;
        resp.json().context("the /query response is not JSON")
    }
}

/// The response if it is a success; otherwise an error with the server's message.
pub fn check(resp: Response) -> anyhow::Result<Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("message").or_else(|| v.get("error")).and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or(text);
    bail!("server answered {status}: {}", message.trim())
}
