//! The Debian package (`packaging/build-deb.sh`): installed on this machine, the service user,
//! directories and modes exist, the systemd unit verifies, the unit's own `ExecStart` runs as
//! its `User=` and stores and answers a point, and a purge removes it all again.
//!
//! systemd is not PID 1 on the test machines, so the service is started the way the unit says
//! (its command line, user and group) rather than by `systemctl start`; docs/packaging.md says so.

use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_e2e::{server, tools, workspace_bin};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_owned()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "strata"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Purges the package when the test ends, however it ends.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "strata"]).output();
    }
}

/// The packaged server, killed if the test fails before stopping it.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The unit's `key=value` entries (first occurrence).
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("strata.service has no {key}="))
}

fn id(flag: &str, user: &str) -> u32 {
    run(Command::new("id").args([flag, user])).trim().parse().expect("numeric id")
}

fn wait_ready(child: &mut Child, ready: &Path) -> String {
    let deadline = Instant::now() + server::START_TIMEOUT;
    loop {
        if let Ok(text) = std::fs::read_to_string(ready) {
            let v: serde_json::Value = serde_json::from_str(&text).expect("ready file is JSON");
            return v["http"].as_str().expect("http addr").to_owned();
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the packaged strata exited before listening ({status})");
        }
        assert!(Instant::now() < deadline, "the packaged strata did not listen in time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn debian_package_installs_runs_as_its_user_and_purges() {
    let test = "debian_package_installs_runs_as_its_user_and_purges";
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return tools::missing(
            test,
            "root (dpkg -i installs into /usr, /etc, /var/lib)",
            "run the suite as root",
        );
    }
    for tool in ["dpkg-deb", "dpkg", "adduser"] {
        if Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .map_or(true, |o| !o.status.success())
        {
            return tools::missing(test, tool, "apt-get install dpkg adduser");
        }
    }
    assert!(
        !installed(),
        "a strata package is already installed on this machine; this test installs and purges its own \
         (dpkg --purge strata to run it)"
    );

    let work = tempfile::tempdir().expect("tempdir");
    let deb = run(Command::new(repo_root().join("packaging/build-deb.sh"))
        .arg(workspace_bin("strata"))
        .arg(work.path())
        .env("STRATA_DEB_COMPRESSION", "none"));
    let deb = deb.trim();
    let _purge = Purge;
    run(Command::new("dpkg").args(["-i", deb]));
    assert!(installed(), "dpkg -i did not leave strata installed");

    // What the package put where, with which owner and mode.
    let uid = id("-u", "strata");
    let gid = id("-g", "strata");
    assert_ne!(uid, 0, "the service user must not be root");
    let data = std::fs::metadata("/var/lib/strata").expect("/var/lib/strata");
    assert_eq!(
        (data.uid(), data.gid(), data.mode() & 0o777),
        (uid, gid, 0o750),
        "/var/lib/strata owner and mode"
    );
    let conf = std::fs::metadata("/etc/strata/strata.toml").expect("/etc/strata/strata.toml");
    assert_eq!((conf.uid(), conf.gid(), conf.mode() & 0o777), (0, gid, 0o640), "strata.toml owner and mode");
    let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "strata"]));
    assert!(conffiles.contains("/etc/strata/strata.toml"), "the config is not a conffile: {conffiles}");
    let unit = std::fs::read_to_string("/lib/systemd/system/strata.service").expect("unit installed");
    if Command::new("sh")
        .args(["-c", "command -v systemd-analyze"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        run(Command::new("systemd-analyze").args(["verify", "/lib/systemd/system/strata.service"]));
    }

    // Start it as the unit does: its ExecStart, as its User= and Group=, on ephemeral ports.
    assert_eq!(unit_value(&unit, "User"), "strata");
    let exec: Vec<&str> = unit_value(&unit, "ExecStart").split_whitespace().collect();
    assert_eq!(exec[0], "/usr/bin/strata");
    let run_dir = work.path().join("run");
    std::fs::create_dir(&run_dir).expect("run dir");
    std::os::unix::fs::chown(&run_dir, Some(uid), Some(gid)).expect("chown run dir");
    let ready = run_dir.join("ready.json");
    let log = std::fs::File::create(work.path().join("strata.log")).expect("log");
    let mut service = Service(
        Command::new(exec[0])
            .args(&exec[1..])
            .args(["--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--ready-file"])
            .arg(&ready)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir("/")
            .uid(uid)
            .gid(gid)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start /usr/bin/strata"),
    );
    let addr = wait_ready(&mut service.0, &ready);
    let http = server::client();
    let write = http
        .post(format!("http://{addr}/write?db=pkg"))
        .body("boiler,site=a temp=61.5 1700000000000000000")
        .send()
        .expect("write");
    assert_eq!(write.status().as_u16(), 204, "write: {}", write.text().unwrap_or_default());
    let answer = http
        .get(format!("http://{addr}/query"))
        .query(&[("db", "pkg"), ("q", "SELECT temp FROM boiler")])
        .send()
        .expect("query")
        .text()
        .expect("body");
    assert!(answer.contains("61.5"), "the point did not come back: {answer}");

    // SIGTERM, as systemd stops it: a clean exit, and the data belongs to the service user.
    // SAFETY: kill on the PID of our own child.
    unsafe { libc::kill(service.0.id() as i32, libc::SIGTERM) };
    let status = service.0.wait().expect("wait");
    assert!(status.success(), "strata did not exit cleanly on SIGTERM: {status}");
    let wal = std::fs::read_dir("/var/lib/strata").expect("data dir").count();
    assert!(wal > 0, "nothing was stored under /var/lib/strata");
    for entry in std::fs::read_dir("/var/lib/strata").expect("data dir") {
        let meta = entry.expect("entry").metadata().expect("metadata");
        assert_eq!(meta.uid(), uid, "files under /var/lib/strata must belong to strata");
    }

    run(Command::new("dpkg").args(["--purge", "strata"]));
    assert!(!installed(), "purge left the package installed");
    assert!(!Path::new("/var/lib/strata").exists(), "purge left /var/lib/strata");
    assert!(!Path::new("/usr/bin/strata").exists(), "purge left /usr/bin/strata");
    let user = Command::new("id").arg("strata").output().expect("id");
    assert!(!user.status.success(), "purge left the strata user");
}
