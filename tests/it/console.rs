//! The web console (`docs/console.md`) end to end: its files and headers over HTTP, then the
//! pages in headless Chromium against an auth-enabled server: login (a wrong token refused,
//! an admin token, a read-only token), Explore with a chart and a table of written values,
//! Databases, Devices (a device that published over MQTT, then went offline), Ingest health
//! with a dead letter and its replay, and hostile names rendered as text.

mod cdp;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use rumqttc::{Client, MqttOptions, QoS};
use serde_json::{json, Value};
use strata_e2e::mqtt::mqtt_addr;
use strata_e2e::server::{client, ServerBuilder, StrataServer};
use strata_e2e::tools;

use self::cdp::Browser;
use crate::http_auth::strata_token;
use crate::mqtt_ingest::wait_acks;

const ADMIN: &str = "admin-token-for-console-tests-0123";
/// A tag value that is HTML: it must show as these characters, never as an element.
const HOSTILE_TAG: &str = "<img src=x onerror=window.__pwned=1>";
const HOSTILE_MEASUREMENT: &str = "<svg/onload=window.__pwned=2>";

/// The files are served without a token, with their types and a strict policy; the API keeps
/// its routes and its auth.
#[test]
fn console_files_headers_and_routes() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).arg("--auth").env("STRATA_ADMIN_TOKEN", ADMIN).start();
    let c = client();
    let r = c.get(server.url("/")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the console page needs no token");
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let csp = h["content-security-policy"].to_str().unwrap();
    for directive in ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"]
    {
        assert!(csp.contains(directive), "CSP lacks {directive}: {csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    let html = r.text().unwrap();
    assert!(html.contains(r#"<script type="module" src="/console/app.js">"#), "{html}");
    assert!(!html.contains("<script>") && !html.contains("style="), "no inline script or style");

    for (path, ty) in [
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/pages/explore.js", "text/javascript; charset=utf-8"),
        ("/console/style.css", "text/css; charset=utf-8"),
        ("/console/vendor/uPlot.esm.js", "text/javascript; charset=utf-8"),
    ] {
        let r = c.get(server.url(path)).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()["content-type"], ty, "{path}");
        let etag = r.headers()["etag"].clone();
        let again = c.get(server.url(path)).header("if-none-match", etag).send().unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path} revalidates with its ETag");
    }
    for path in ["/console/nope.js", "/console/package.json", "/console/../Cargo.toml", "/console/"] {
        let r = c.get(server.url(path)).send().unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // The API around it is unchanged: auth on /query, 204 on /ping, JSON 404 elsewhere.
    assert_eq!(
        c.get(server.url("/query?q=SHOW%20DATABASES")).send().unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(c.get(server.url("/ping")).send().unwrap().status(), StatusCode::NO_CONTENT);
    let r = c.get(server.url("/api/v1/nothing")).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.headers()["content-type"].to_str().unwrap().contains("json"));
}

fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Sets a form control's value as typing would (an `input` event follows).
fn fill(b: &mut Browser, selector: &str, value: &str) {
    b.wait_for(&format!("document.querySelector({})", js(selector)), selector);
    b.eval(&format!(
        "(() => {{ const e = document.querySelector({}); e.value = {}; \
         e.dispatchEvent(new Event('input', {{bubbles: true}})); e.dispatchEvent(new Event('change', {{bubbles: true}})); }})()",
        js(selector),
        js(value)
    ));
}

fn click(b: &mut Browser, selector: &str) {
    b.wait_for(&format!("document.querySelector({})", js(selector)), selector);
    b.eval(&format!("document.querySelector({}).click()", js(selector)));
}

/// Waits until the element's text contains `needle`; returns the text.
fn wait_text(b: &mut Browser, selector: &str, needle: &str) -> String {
    let v = b.wait_for(
        &format!(
            "(() => {{ const e = document.querySelector({}); const t = e ? e.textContent : ''; return t.includes({}) ? t : ''; }})()",
            js(selector),
            js(needle)
        ),
        &format!("{needle:?} in {selector}"),
    );
    v.as_str().unwrap_or_default().to_owned()
}

/// No error message on the page (a failed call shows as `.msg.error`).
fn no_error_shown(b: &mut Browser, page: &str) {
    let errors = b.eval("[...document.querySelectorAll('#view .msg.error')].map(e => e.textContent)");
    assert_eq!(errors, json!([]), "errors shown on {page}");
}

/// Opens another page. The new hash must differ from the current one (else no navigation
/// happens and a test would read the old page).
fn go(b: &mut Browser, hash: &str) {
    assert_ne!(b.eval("location.hash"), json!(hash), "already on {hash}");
    b.eval(&format!("location.hash = {}", js(hash)));
}

fn shot(b: &mut Browser, name: &str) {
    if let Some(dir) = std::env::var_os("STRATA_CONSOLE_SCREENSHOTS") {
        // Lets charts finish their first frame.
        std::thread::sleep(Duration::from_millis(200));
        b.screenshot(&std::path::Path::new(&dir).join(format!("{name}.png")));
    }
}

fn sign_in(b: &mut Browser, token: &str) {
    fill(b, "#login-token", token);
    b.eval("document.querySelector('form.login').requestSubmit()");
}

fn write_data(server: &StrataServer) {
    let c = client();
    let mut body = String::new();
    for i in 0..5 {
        let t = 1_714_564_800 + 60 * i;
        body.push_str(&format!("climate,room=kitchen temp={} {t}\n", 21.5 + i as f64 / 10.0));
        let hostile = HOSTILE_TAG.replace(' ', "\\ ").replace('=', "\\=");
        body.push_str(&format!("climate,room={hostile} temp={} {t}\n", 30 + i));
    }
    body.push_str(&format!("{HOSTILE_MEASUREMENT} v=1 1714564800\n"));
    let r = c
        .post(server.url("/api/v2/write?bucket=plant&precision=s"))
        .bearer_auth(ADMIN)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().unwrap());
    let r = c.post(server.url("/api/v1/databases?name=factory")).bearer_auth(ADMIN).send().unwrap();
    assert!(r.status().is_success());
    let cq = "CREATE CONTINUOUS QUERY cq_climate_1m ON plant BEGIN SELECT mean(temp) \
              INTO plant..climate_1m FROM climate GROUP BY time(1m), * END";
    let r = c.post(server.url("/query")).bearer_auth(ADMIN).form(&[("q", cq)]).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().unwrap();
    assert!(!body.contains("error"), "{body}");
}

/// `dev-7` publishes a good and a bad message (the bad one is dead-lettered); returns the
/// client, still connected.
fn publish_device(server: &StrataServer) -> (Client, std::thread::JoinHandle<()>) {
    let addr = mqtt_addr(server);
    let mut opts = MqttOptions::new("dev-7", addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_credentials("dev-7", ADMIN);
    let (c, mut conn) = Client::new(opts, 10);
    c.publish("telemetry/dev-7/boiler", QoS::AtLeastOnce, false, "boiler pressure=1.75").unwrap();
    c.publish("telemetry/dev-7/boiler", QoS::AtLeastOnce, false, "this is not line protocol").unwrap();
    wait_acks(&mut conn, 2);
    // Keeps the connection serviced (PINGREQs) until the client disconnects.
    let pump = std::thread::spawn(move || for _ in conn.iter().take_while(Result::is_ok) {});
    (c, pump)
}

fn device_online(server: &StrataServer) -> bool {
    let r = client().get(server.url("/api/v1/mqtt/devices/dev-7")).bearer_auth(ADMIN).send().unwrap();
    r.json::<Value>().unwrap()["online"] == json!(true)
}

#[test]
fn console_pages_in_chromium() {
    let Some(chromium) = cdp::chromium() else {
        tools::missing("console_pages_in_chromium", "chromium", "apt-get install chromium");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let reader = strata_token(dir.path(), &["create", "--db", "plant", "--read"]).trim().to_owned();
    let server = ServerBuilder::new(dir.path()).arg("--auth").env("STRATA_ADMIN_TOKEN", ADMIN).start();
    write_data(&server);
    let (device, pump) = publish_device(&server);

    let mut b = Browser::launch(&chromium);
    b.navigate(&server.url("/"));

    // No token: the login. A wrong token is refused with a visible reason.
    b.wait_for("document.querySelector('#login-token')", "the login form");
    assert_eq!(b.eval("document.querySelector('#nav').hidden"), json!(true), "pages hidden before login");
    shot(&mut b, "login");
    sign_in(&mut b, "strata_not_a_token");
    let refused = wait_text(&mut b, "#login-error", "refused");
    assert!(refused.contains("401"), "{refused}");
    assert_eq!(b.eval("sessionStorage.getItem('strata.token')"), Value::Null, "a refused token is not kept");

    // The admin token: Explore, a query over the written points, chart and table.
    sign_in(&mut b, ADMIN);
    wait_text(&mut b, "#who", "admin");
    b.wait_for("document.querySelector('#q')", "the Explore page");
    fill(&mut b, "#db", "plant");
    fill(&mut b, "#q", "SELECT temp FROM climate GROUP BY room");
    click(&mut b, "#run");
    wait_text(&mut b, "#status", "2 series, 10 rows");
    b.wait_for("document.querySelector('#chart canvas')", "the chart's canvas");
    assert_eq!(b.eval("document.querySelector('#chart').dataset.points"), json!("10"));
    assert_eq!(b.eval("document.querySelector('#chart').dataset.lines"), json!("2"));
    // Both series in the legend, the hostile tag value as text there and in the tables.
    let legend = b.eval("document.querySelector('#chart .u-legend').textContent");
    let legend = legend.as_str().unwrap();
    assert!(legend.contains("room=kitchen") && legend.contains(HOSTILE_TAG), "{legend}");
    let tables = b.eval("document.querySelector('#tables').textContent");
    let tables = tables.as_str().unwrap();
    for v in ["21.5", "21.9", "34", "2024-05-01T12:00:00.000Z", HOSTILE_TAG] {
        assert!(tables.contains(v), "{v} not in the tables: {tables}");
    }
    assert_eq!(b.eval("document.querySelectorAll('#tables tbody tr').length"), json!(10));
    no_error_shown(&mut b, "Explore");
    // Zoom: a drag across the middle of the plot narrows the time axis to what was dragged.
    let span =
        "(() => { const x = document.querySelector('#chart')._plot.scales.x; return x.max - x.min; })()";
    let before = b.eval(span).as_f64().unwrap();
    let r = b.eval(
        "(() => { const o = document.querySelector('#chart .u-over'); o.scrollIntoView(); \
         const r = o.getBoundingClientRect(); return [r.left, r.width, r.top + r.height / 2]; })()",
    );
    let r: Vec<f64> = r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    b.drag(r[0] + r[1] * 0.2, r[0] + r[1] * 0.6, r[2]);
    let after = b.eval(span).as_f64().unwrap();
    assert!(after > 0.0 && after < before * 0.6, "zoom: span {before} -> {after}");
    shot(&mut b, "explore");
    // The time range: a custom one around the points, through $timeFilter, and $interval
    // picked for about 500 points over two hours (30 s: one mean per written point).
    fill(&mut b, "#range", "custom");
    fill(&mut b, "#from", "2024-05-01T11:00:00");
    fill(&mut b, "#to", "2024-05-01T13:00:00");
    fill(
        &mut b,
        "#q",
        "SELECT mean(temp) FROM climate WHERE $timeFilter GROUP BY time($interval), room fill(none)",
    );
    click(&mut b, "#run");
    wait_text(&mut b, "#status", "2 series, 10 rows");
    let span = b.eval(
        "(() => { const x = document.querySelector('#chart')._plot.scales.x; return x.max - x.min; })()",
    );
    assert_eq!(span.as_f64(), Some(7200.0), "the chart spans the range picked");
    assert_eq!(b.eval("document.querySelector('#chart').dataset.points"), json!("10"));
    // CSV of the same query.
    click(&mut b, "#csv");
    let csv = wait_text(&mut b, "#csv-status", "CSV: ");
    assert!(csv.contains("10 rows"), "{csv}");
    // The history keeps both queries, the newest first; a click puts one back in the editor.
    let hist = wait_text(&mut b, "#history", "SELECT temp FROM climate GROUP BY room");
    assert!(hist.contains("[plant]") && hist.contains("$timeFilter"), "{hist}");
    click(&mut b, "#history li:nth-child(2) button");
    assert_eq!(b.eval("document.querySelector('#q').value"), json!("SELECT temp FROM climate GROUP BY room"));

    // Databases, reached from the keyboard: focus lands on the page, not on the link left.
    b.eval("document.querySelector('#nav a[data-page=databases]').focus()");
    b.press_enter();
    b.wait_for("document.activeElement && document.activeElement.id === 'view'", "focus on the new page");
    // The database created over the API, the hostile measurement as text.
    wait_text(&mut b, "#databases", "factory");
    let text = wait_text(&mut b, "#databases", HOSTILE_MEASUREMENT);
    assert!(text.contains("plant") && text.contains("telemetry") && text.contains("autogen"), "{text}");
    let cqs = wait_text(&mut b, "#cqs", "cq_climate_1m");
    assert!(cqs.contains("climate_1m") && cqs.contains("plant"), "{cqs}");
    no_error_shown(&mut b, "Databases");
    // A measurement links into Explore with a query over it.
    b.eval("[...document.querySelectorAll('#databases a')].find(a => a.textContent === 'climate').click()");
    b.wait_for(
        "document.querySelector('#q') && document.querySelector('#q').value.includes('FROM \"climate\"')",
        "Explore from Databases",
    );
    assert_eq!(b.eval("document.querySelector('#db').value"), json!("plant"));
    shot(&mut b, "databases");

    // Devices: dev-7 online, its latest value, then offline once it disconnects.
    go(&mut b, "#/devices");
    let list = wait_text(&mut b, "#device-list", "dev-7");
    assert!(list.contains("online"), "{list}");
    fill(&mut b, "#device-search", "nobody");
    wait_text(&mut b, "#device-summary", "0 match");
    fill(&mut b, "#device-search", "dev");
    wait_text(&mut b, "#device-summary", "1 match");
    no_error_shown(&mut b, "Devices");
    shot(&mut b, "devices");
    click(&mut b, "#device-list a");
    let latest = wait_text(&mut b, "#device-latest", "1.75");
    assert!(latest.contains("pressure"), "{latest}");
    b.wait_for("document.querySelector('#device-chart').dataset.points === '1'", "the device's chart");
    // The chart spans the hour asked for, not the single point alone.
    let span = b.eval("(() => { const x = document.querySelector('#device-chart')._plot.scales.x; return x.max - x.min; })()");
    assert!((span.as_f64().unwrap() - 3600.0).abs() < 5.0, "device chart spans {span} s");
    no_error_shown(&mut b, "the device page");
    shot(&mut b, "device");
    device.disconnect().unwrap();
    pump.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while device_online(&server) {
        assert!(Instant::now() < deadline, "dev-7 still online after disconnecting");
        std::thread::sleep(Duration::from_millis(20));
    }
    go(&mut b, "#/devices");
    wait_text(&mut b, "#device-list", "offline");

    // A link whose device id is InfluxQL: the id stays inside its string literal.
    go(&mut b, "#/devices/x'; DROP DATABASE plant; SELECT '");
    wait_text(&mut b, "#device-latest", "wrote nothing to telemetry");
    let r = client().get(server.url("/api/v1/databases")).bearer_auth(ADMIN).send().unwrap();
    let dbs = r.json::<Value>().unwrap();
    assert!(dbs["databases"].as_array().unwrap().contains(&json!("plant")), "{dbs}");

    // Ingest health: rates from two scrapes, the dead letter, its replay (it fails again: the
    // payload is still not line protocol, and the page says so).
    go(&mut b, "#/ingest");
    wait_text(&mut b, "#writes", "points/s, line");
    b.wait_for("!document.querySelector('#writes').textContent.includes('…')", "rates from a second scrape");
    let letters = wait_text(&mut b, "#dead-letters", "this is not line protocol");
    assert!(letters.contains("1 dead letters"), "{letters}");
    no_error_shown(&mut b, "Ingest health");
    shot(&mut b, "ingest");
    click(&mut b, "#dead-letters button");
    let replayed = wait_text(&mut b, "#replay-status", "Replayed 0, failed 1");
    assert!(replayed.contains("Dead letter"), "{replayed}");

    // Nothing hostile became markup anywhere on the way.
    assert_eq!(b.eval("document.querySelectorAll('#view img, #view svg').length"), json!(0));
    assert_eq!(b.eval("typeof window.__pwned"), json!("undefined"));

    // A read-only token: it queries its database; the replay is refused, visibly.
    click(&mut b, "#logout");
    b.wait_for("document.querySelector('#login-token')", "the login after logging out");
    sign_in(&mut b, &reader);
    wait_text(&mut b, "#who", "limited");
    fill(&mut b, "#db", "plant");
    fill(&mut b, "#q", "SELECT temp FROM climate WHERE room = 'kitchen'");
    click(&mut b, "#run");
    wait_text(&mut b, "#status", "1 series, 5 rows");
    assert_eq!(b.eval("document.querySelector('#chart').dataset.points"), json!("5"));
    go(&mut b, "#/ingest");
    click(&mut b, "#replay-all");
    let refused = wait_text(&mut b, "#replay-status", "Replay refused");
    assert!(refused.contains("403"), "{refused}");

    // Auth off, on a loopback listener: no sign-in, and the page's own requests pass the
    // cross-site checks (Origin on POST, a loopback Host).
    let open_dir = tempfile::tempdir().unwrap();
    let open = ServerBuilder::new(open_dir.path()).start();
    let r = client().post(open.url("/write?db=lab&precision=s")).body("m v=7 1714564800").send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    b.navigate(&open.url("/#/explore"));
    wait_text(&mut b, "#who", "authentication off");
    assert_eq!(b.eval("document.querySelector('#logout').hidden"), json!(true));
    fill(&mut b, "#db", "lab");
    fill(&mut b, "#q", "SELECT v FROM m");
    // Ctrl+Enter in the editor runs the query, as the help line says.
    b.eval(
        "document.querySelector('#q').dispatchEvent(new KeyboardEvent('keydown', \
         {key: 'Enter', ctrlKey: true, bubbles: true}))",
    );
    wait_text(&mut b, "#status", "1 series, 1 rows");
    assert_eq!(b.eval("document.querySelector('#chart').dataset.points"), json!("1"));

    // No script errors, no CSP violations; the only failed loads are those the test asked for
    // (401 for the wrong token, 403 for the read-only one, 404 for the made-up device).
    let errors: Vec<String> = b
        .errors()
        .into_iter()
        .filter(|e| {
            !(e.starts_with("log [network]")
                && (e.contains(" 401 ")
                    || e.contains(" 403 ")
                    || (e.contains(" 404 ") && e.contains("/api/v1/mqtt/devices/x'"))))
        })
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}
