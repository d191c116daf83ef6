//! The web console (`docs/console.md`): static files under `console/` in the repository,
//! embedded in the binary at build time and served at `/` (the page) and `/console/{file}`
//! (its modules, styles and the vendored uPlot).
//!
//! No build step: the sources are plain ES modules the browser loads as they are, so what is
//! in `console/` is what is served. The files are listed in [`ASSETS`] by hand (a test fails
//! when a file in `console/` is missing from the list), each one an `include_bytes!`, so
//! cargo rebuilds the binary when one changes.
//!
//! The files hold no secrets and are served without a token; every API call the console
//! makes carries the token the user typed and is authorized as any other. Every answer
//! carries a strict Content-Security-Policy (scripts, styles, images and fetches from this
//! origin only, no inline script or style, no framing), `X-Content-Type-Options: nosniff` and
//! an ETag: module names are not hashed (they import each other by name), so the browser
//! revalidates (`Cache-Control: no-cache`) and gets 304 while the binary is the same.
//!
//! It is not a single-page server: only the listed files exist; any other `/console/...`
//! path is 404, and the API's routes are never shadowed (nothing else lives under
//! `/console/`, and `/` was unrouted).

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::ApiError;

/// The policy every console answer carries. `img-src data:` is for nothing of ours today but
/// keeps uPlot's and the browser's own data-URI cursors working; `connect-src 'self'` is what
/// lets the page call the API on the same origin and nowhere else.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
pub struct Asset {
    /// Path under `console/`, as requested under `/console/`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

macro_rules! asset {
    ($path:literal, $ct:expr) => {
        Asset { path: $path, content_type: $ct, bytes: include_bytes!(concat!("../../../console/", $path)) }
    };
}

/// Every file the console serves. `index.html` is also the answer to `/`.
pub static ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("style.css", CSS),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("chart.js", JS),
    asset!("prom.js", JS),
    asset!("format.js", JS),
    asset!("pages/login.js", JS),
    asset!("pages/explore.js", JS),
    asset!("pages/ingest.js", JS),
    asset!("pages/databases.js", JS),
    asset!("pages/devices.js", JS),
    asset!("vendor/uPlot.esm.js", JS),
    asset!("vendor/uPlot.min.css", CSS),
    asset!("vendor/uPlot.LICENSE", TEXT),
];

/// Files in `console/` that are not served: the npm pin of uPlot and the tarball it was
/// copied from (checked by the tests below).
#[cfg(test)]
const NOT_SERVED: &[&str] = &["package.json", "package-lock.json", "vendor/uplot-1.6.32.tgz"];

/// `"<sha256 prefix>"` of each asset, computed once.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS.iter().map(|a| format!("\"{}\"", hex::encode(&Sha256::digest(a.bytes)[..12]))).collect()
});

/// `GET /`: the console's page.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers).unwrap_or_else(IntoResponse::into_response)
}

/// `GET /console/{path}`.
pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    serve(&path, &headers)
}

fn serve(path: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let Some(i) = ASSETS.iter().position(|a| a.path == path) else {
        return Err(ApiError::NotFound(format!("no console file {path:?}")));
    };
    let a = &ASSETS[i];
    let etag = &ETAGS[i];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, a.content_type)], a.bytes).into_response()
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::path::{Path, PathBuf};

    use base64::Engine as _;
    use sha2::Sha512;

    use super::*;

    fn console_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../console")
    }

    fn files(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                // npm's own working directory, if someone ran `npm ci` there.
                if p.file_name().is_some_and(|n| n == "node_modules") {
                    continue;
                }
                files(&p, base, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().replace('\\', "/"));
            }
        }
    }

    /// The hand-kept list cannot fall behind the directory: a new module that is not listed
    /// would be a 404 in the browser.
    #[test]
    fn every_console_file_is_served_or_named_as_not_served() {
        let dir = console_dir();
        let mut found = Vec::new();
        files(&dir, &dir, &mut found);
        found.sort();
        let mut listed: Vec<String> = ASSETS
            .iter()
            .map(|a| a.path.to_owned())
            .chain(NOT_SERVED.iter().map(|s| (*s).to_owned()))
            .collect();
        listed.sort();
        assert_eq!(found, listed, "console/ and ASSETS + NOT_SERVED differ");
        for a in ASSETS {
            assert_eq!(a.bytes, std::fs::read(dir.join(a.path)).unwrap(), "{} is stale", a.path);
        }
    }

    /// The vendored uPlot files are byte for byte those of the npm tarball, and the tarball is
    /// the one the lockfile pins (its `integrity`, sha512): nobody edited the vendored copy.
    #[test]
    fn vendored_uplot_matches_npm_tarball() {
        let dir = console_dir();
        let lock: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("package-lock.json")).unwrap()).unwrap();
        let pkg = &lock["packages"]["node_modules/uplot"];
        let version = pkg["version"].as_str().unwrap();
        let integrity = pkg["integrity"].as_str().unwrap();
        let tgz_name = format!("vendor/uplot-{version}.tgz");
        assert!(NOT_SERVED.contains(&tgz_name.as_str()), "NOT_SERVED names another uPlot version");
        let tgz = std::fs::read(dir.join(&tgz_name)).unwrap();
        let got =
            format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&tgz)));
        assert_eq!(got, integrity, "{tgz_name} is not the tarball the lockfile pins");

        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&tgz[..]).read_to_end(&mut tar).unwrap();
        let entries = untar(&tar);
        for (vendored, in_tarball) in [
            ("vendor/uPlot.esm.js", "package/dist/uPlot.esm.js"),
            ("vendor/uPlot.min.css", "package/dist/uPlot.min.css"),
            ("vendor/uPlot.LICENSE", "package/LICENSE"),
        ] {
            let want = entries
                .iter()
                .find(|(n, _)| n == in_tarball)
                .unwrap_or_else(|| panic!("{in_tarball} not in {tgz_name}"));
            let served = ASSETS.iter().find(|a| a.path == vendored).unwrap();
            assert!(served.bytes == want.1.as_slice(), "{vendored} differs from {in_tarball} of {tgz_name}");
        }
        let pkg_json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("package.json")).unwrap()).unwrap();
        assert_eq!(pkg_json["dependencies"]["uplot"], version, "package.json and its lockfile disagree");
    }

    /// The regular files of a ustar archive (what npm packs): 512-byte headers, name at 0,
    /// octal size at 124, type at 156, ustar prefix at 345.
    fn untar(tar: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 512 <= tar.len() {
            let h = &tar[at..at + 512];
            if h.iter().all(|&b| b == 0) {
                break;
            }
            let cstr = |b: &[u8]| String::from_utf8_lossy(b.split(|&c| c == 0).next().unwrap()).into_owned();
            let size = usize::from_str_radix(cstr(&h[124..136]).trim(), 8).unwrap();
            let prefix = cstr(&h[345..500]);
            let name =
                if prefix.is_empty() { cstr(&h[..100]) } else { format!("{prefix}/{}", cstr(&h[..100])) };
            let body = tar[at + 512..at + 512 + size].to_vec();
            if h[156] == b'0' || h[156] == 0 {
                out.push((name, body));
            }
            at += 512 + size.div_ceil(512) * 512;
        }
        out
    }

    #[test]
    fn etag_revalidation_and_headers() {
        let r = serve("app.js", &HeaderMap::new()).unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], JS);
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let etag = r.headers()[header::ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(serve("app.js", &h).unwrap().status(), StatusCode::NOT_MODIFIED);
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert_eq!(serve("app.js", &h).unwrap().status(), StatusCode::OK);
        assert!(serve("../Cargo.toml", &HeaderMap::new()).is_err());
        assert!(serve("package.json", &HeaderMap::new()).is_err());
    }
}
