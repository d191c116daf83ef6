//! The dependency tree, checked on every run without installing a tool (`docs/testing.md`):
//! every third-party crate the build links is under a license on the allow-list, and every
//! dependency a workspace crate declares is named in its code. Both read `cargo metadata`
//! offline, resolved for this host (what the build downloaded is all it needs).
//!
//! No advisory check: the RustSec database lives on GitHub, which this network cannot reach.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use regex::Regex;
use serde_json::Value;

/// Licenses a dependency may be used under: permissive ones whose only condition is keeping
/// the notice. A crate offered under several (`A OR B`) needs one of them; `A AND B` needs both.
const ALLOWED: &[&str] = &[
    "MIT",
    "MIT-0",
    "Apache-2.0",
    "Apache-2.0 WITH LLVM-exception",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "Zlib",
    "0BSD",
    "Unlicense",
    "CC0-1.0",
    "BSL-1.0",
    "Unicode-3.0",
    // webpki-roots' certificate data (Mozilla's root store).
    "CDLA-Permissive-2.0",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned()
}

fn metadata() -> Value {
    let host = Command::new("rustc").arg("-vV").output().expect("rustc -vV");
    let host = String::from_utf8_lossy(&host.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc names its host");
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline", "--filter-platform", &host])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("cargo metadata JSON")
}

/// Whether an SPDX expression (`A OR (B AND C)`, `A/B`, `A WITH exception`) is satisfied by
/// the allow-list.
fn allowed(expr: &str) -> bool {
    let text = expr.replace('/', " OR ").replace('(', " ( ").replace(')', " ) ");
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let mut at = 0;
    let ok = or_expr(&tokens, &mut at);
    ok && at == tokens.len()
}

fn or_expr(t: &[&str], at: &mut usize) -> bool {
    let mut ok = and_expr(t, at);
    while t.get(*at) == Some(&"OR") {
        *at += 1;
        ok |= and_expr(t, at);
    }
    ok
}

fn and_expr(t: &[&str], at: &mut usize) -> bool {
    let mut ok = term(t, at);
    while t.get(*at) == Some(&"AND") {
        *at += 1;
        ok &= term(t, at);
    }
    ok
}

fn term(t: &[&str], at: &mut usize) -> bool {
    match t.get(*at) {
        Some(&"(") => {
            *at += 1;
            let ok = or_expr(t, at);
            if t.get(*at) == Some(&")") {
                *at += 1;
                ok
            } else {
                false
            }
        }
        Some(id) => {
            *at += 1;
            let mut name = id.to_string();
            if t.get(*at) == Some(&"WITH") {
                name = format!("{name} WITH {}", t.get(*at + 1).unwrap_or(&""));
                *at += 2;
            }
            ALLOWED.contains(&name.as_str())
        }
        None => false,
    }
}

#[test]
fn license_expressions() {
    assert!(allowed("MIT OR Apache-2.0"));
    assert!(allowed("MIT/Apache-2.0"));
    assert!(allowed("(MIT OR Apache-2.0) AND Unicode-3.0"));
    assert!(allowed("Apache-2.0 WITH LLVM-exception OR GPL-3.0"));
    assert!(!allowed("GPL-3.0"));
    assert!(!allowed("MIT AND GPL-3.0"));
    assert!(!allowed("GPL-2.0 WITH Classpath-exception-2.0"));
    assert!(!allowed("(MIT"));
    assert!(!allowed(""));
}

#[test]
fn every_linked_crate_has_an_allowed_license() {
    let m = metadata();
    let members: BTreeSet<&str> =
        m["workspace_members"].as_array().expect("members").iter().filter_map(Value::as_str).collect();
    let mut bad = Vec::new();
    let mut checked = 0;
    for p in m["packages"].as_array().expect("packages") {
        if members.contains(p["id"].as_str().unwrap_or_default()) {
            continue;
        }
        checked += 1;
        match p["license"].as_str() {
            Some(l) if allowed(l) => {}
            other => bad.push(format!("{} {}: {other:?}", p["name"], p["version"])),
        }
    }
    assert!(checked > 50, "cargo metadata listed only {checked} third-party crates");
    assert!(
        bad.is_empty(),
        "dependencies under a license not on the allow-list (tests/it/dependencies.rs):\n{}",
        bad.join("\n")
    );
}

/// Every `.rs` file of a crate, outside `target/`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "target" && n != "node_modules") {
                sources(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_declared_dependency_is_used() {
    let m = metadata();
    let members: BTreeSet<&str> =
        m["workspace_members"].as_array().expect("members").iter().filter_map(Value::as_str).collect();
    let mut unused = Vec::new();
    for p in m["packages"].as_array().expect("packages") {
        if !members.contains(p["id"].as_str().unwrap_or_default()) {
            continue;
        }
        let manifest = Path::new(p["manifest_path"].as_str().expect("manifest path"));
        let mut files = Vec::new();
        sources(manifest.parent().expect("crate dir"), &mut files);
        let code: String =
            files.iter().filter_map(|f| std::fs::read_to_string(f).ok()).collect::<Vec<_>>().join("\n");
        let ignored: Vec<&str> = p["metadata"]["cargo-machete"]["ignored"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for d in p["dependencies"].as_array().expect("dependencies") {
            let name = d["name"].as_str().expect("dependency name");
            let ident = d["rename"].as_str().unwrap_or(name).replace('-', "_");
            if ignored.contains(&name) {
                continue;
            }
            let used = Regex::new(&format!(r"\b{ident}::|\buse {ident}\b|extern crate {ident}\b|\b{ident}!"))
                .expect("regex")
                .is_match(&code);
            if !used {
                unused.push(format!("{}: {name} ({})", p["name"], d["kind"].as_str().unwrap_or("normal")));
            }
        }
    }
    assert!(
        unused.is_empty(),
        "declared but never named in the crate's code (remove it, or list it under \
         [package.metadata.cargo-machete] ignored with the reason):\n{}",
        unused.join("\n")
    );
}
