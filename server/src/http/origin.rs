//! Cross-site request refusal: a web page the operator visits must not be able to use the
//! operator's browser to change the server (CSRF), nor read from it by rebinding a DNS name
//! to 127.0.0.1.
//!
//! Rules (documented in `docs/http-api.md`):
//! - A state-changing request (any method but GET, HEAD and OPTIONS) that carries an `Origin`
//!   header is refused (403) unless that origin is the server's own (its host and port equal
//!   the request's `Host`) or listed in `http.allowed_origins`. `Origin: null` (sandboxed
//!   frames, `file:` pages) is never the server's own.
//! - A state-changing request with `Sec-Fetch-Site: cross-site` is refused unless its origin
//!   is listed in `http.allowed_origins`.
//! - With auth off on a plain-HTTP loopback listener, every request's `Host` must be a loopback name
//!   (`localhost`, `*.localhost`, `127.x.y.z`, `[::1]`) or listed in `http.allowed_hosts`:
//!   a page on `rebind.example` that re-points its name to 127.0.0.1 sends
//!   `Host: rebind.example` and is refused, so it cannot read what it asks for.
//!
//! Clients that are not browsers (curl, Telegraf, the InfluxDB client libraries, `strata`
//! itself) send no `Origin` and no `Sec-Fetch-*` headers and are not affected. Form and
//! `text/plain` bodies stay accepted on `/query` (Grafana and InfluxDB 1.x clients send them):
//! these rules, not the content type, are what stops a cross-site form.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

/// Why a request was refused as cross-site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrossSite {
    Origin(String),
    FetchSite,
    Host(String),
}

impl std::fmt::Display for CrossSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CrossSite::Origin(o) => write!(
                f,
                "cross-site request refused: Origin {o:?} is not this server; add it to http.allowed_origins if it should be allowed"
            ),
            CrossSite::FetchSite => f.write_str(
                "cross-site request refused: the browser says it comes from another site (Sec-Fetch-Site: cross-site)",
            ),
            CrossSite::Host(h) => write!(
                f,
                "cross-site request refused: Host {h:?} is not a loopback name and authentication is off; add it to http.allowed_hosts if it should be allowed"
            ),
        }
    }
}

/// The middleware: refuses cross-site requests before any handler runs.
pub async fn refuse_cross_site(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let http = &st.config.http;
    // Over HTTPS a rebound name fails the certificate check in the browser, so the Host
    // check is for plain HTTP (where clients may use any name that resolves to loopback).
    let host_check = !st.auth.enabled() && st.loopback_listener && !http.tls_enabled();
    if let Err(why) =
        check(req.method(), req.headers(), &http.allowed_origins, host_check, &http.allowed_hosts)
    {
        tracing::info!(reason = %why, "cross-site request refused");
        return ApiError::CrossSite(why.to_string()).into_response();
    }
    next.run(req).await
}

/// The rules of the module header.
pub fn check(
    method: &Method,
    headers: &HeaderMap,
    allowed_origins: &[String],
    host_check: bool,
    allowed_hosts: &[String],
) -> Result<(), CrossSite> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).map(str::trim);
    if host_check {
        if let Some(h) = host {
            if !is_loopback_host(h)
                && !allowed_hosts
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(h) || a.eq_ignore_ascii_case(strip_port(h)))
            {
                return Err(CrossSite::Host(h.to_owned()));
            }
        }
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let origin = headers.get(header::ORIGIN).map(|v| v.to_str().unwrap_or("null").trim());
    let allowed = origin
        .is_some_and(|o| allowed_origins.iter().any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(o)));
    if allowed {
        return Ok(());
    }
    if let Some(o) = origin {
        if !same_origin(o, host) {
            return Err(CrossSite::Origin(o.to_owned()));
        }
    }
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).unwrap_or("");
    if fetch_site.eq_ignore_ascii_case("cross-site") {
        return Err(CrossSite::FetchSite);
    }
    Ok(())
}

/// True when `origin` (`scheme://host[:port]`) names the same host and port as the request's
/// `Host` header. The scheme's default port stands in for a missing one on either side.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let Some((scheme, authority)) = origin.split_once("://") else { return false };
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => "80",
        "https" => "443",
        _ => return false,
    };
    let norm = |a: &str| -> (String, String) {
        let a = a.to_ascii_lowercase();
        match split_port(&a) {
            (h, Some(p)) => (h.to_owned(), p.to_owned()),
            (h, None) => (h.to_owned(), default.to_owned()),
        }
    };
    norm(authority) == norm(host)
}

/// `host:port` -> (`host`, `port`); IPv6 literals keep their brackets.
fn split_port(a: &str) -> (&str, Option<&str>) {
    if let Some(rest) = a.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((_, tail)) => {
                let end = a.len() - tail.len();
                (&a[..end], tail.strip_prefix(':'))
            }
            None => (a, None),
        };
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (a, None),
    }
}

fn strip_port(a: &str) -> &str {
    split_port(a).0
}

/// `localhost`, `*.localhost`, `127.0.0.0/8`, `[::1]`, with or without a port.
fn is_loopback_host(h: &str) -> bool {
    let name = strip_port(h).trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn rules() {
        let post = Method::POST;
        let allowed = vec!["https://grafana.example".to_owned()];
        let ok = |m: &Method, h: &[(&'static str, &str)]| check(m, &headers(h), &allowed, true, &[]).is_ok();
        assert!(ok(&post, &[("host", "127.0.0.1:8086")]), "no Origin: not a browser");
        assert!(ok(&post, &[("host", "localhost:8086"), ("origin", "http://localhost:8086")]));
        assert!(ok(&post, &[("host", "localhost"), ("origin", "http://localhost:80")]));
        assert!(ok(&post, &[("host", "[::1]:8086"), ("origin", "http://[::1]:8086")]));
        assert!(!ok(&post, &[("host", "localhost:8086"), ("origin", "http://localhost:3000")]));
        assert!(!ok(&post, &[("host", "localhost:8086"), ("origin", "null")]));
        assert!(ok(&post, &[("host", "localhost:8086"), ("origin", "https://grafana.example")]));
        assert!(!ok(&post, &[("host", "localhost:8086"), ("sec-fetch-site", "cross-site")]));
        assert!(ok(&post, &[("host", "localhost:8086"), ("sec-fetch-site", "same-origin")]));
        assert!(ok(&Method::GET, &[("host", "localhost:8086"), ("origin", "http://evil.example")]));
        assert!(!ok(&Method::GET, &[("host", "evil.example:8086")]), "DNS rebinding");
        assert!(ok(&Method::GET, &[("host", "127.1.2.3:8086")]));
        assert!(ok(&Method::GET, &[("host", "db.localhost:8086")]));
        assert!(check(&Method::GET, &headers(&[("host", "evil.example:8086")]), &allowed, false, &[]).is_ok());
        let hosts = vec!["strata.lan".to_owned()];
        assert!(check(&Method::GET, &headers(&[("host", "strata.lan:8086")]), &allowed, true, &hosts).is_ok());
    }
}
