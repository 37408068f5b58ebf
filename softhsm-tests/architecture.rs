//! The module dependency rule and the house rules, read from `src/` (see ARCHITECTURE.md):
//! a module that imports one it must not, an import circle between top-level modules, or a
//! long file without a reason in its header fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules it names (`crate::x`), outside tests and comments.
type Imports = BTreeMap<String, BTreeSet<String>>;

/// What each module may not import. `*` forbids every crate module but the exceptions listed
/// as `!name`.
const RULES: &[(&str, &[&str])] = &[
    // The SCEP codec is bytes in, bytes out. It may name `reason`, itself a leaf that imports
    // nothing, so a token failure handed to it keeps its cause.
    ("scep", &["*", "!reason"]),
    // X.509 knows no token, store or front end.
    (
        "pki",
        &[
            "hsm",
            "store",
            "http",
            "authority",
            "config",
            "scep_service",
        ],
    ),
    // The enrollment core knows no protocol, no front end and no configuration file.
    (
        "authority",
        &[
            "http",
            "scep",
            "scep_service",
            "config",
            "gateway",
            "ceremony",
        ],
    ),
    // Front ends go through the authority and the adapters.
    ("http", &["store", "hsm"]),
    // Storage parses no certificates and decides nothing.
    (
        "store",
        &["pki", "scep", "authority", "http", "hsm", "config", "mdm"],
    ),
    // The gateway (its own binary) links no token, store or core.
    (
        "gateway",
        &[
            "hsm",
            "store",
            "authority",
            "scep_service",
            "http",
            "pki",
            "scep",
        ],
    ),
    // MDM connectors know nothing of what asks them.
    ("mdm", &["authority", "http", "store", "config", "hsm"]),
    // The SCEP adapter sits on the authority, never on a front end or the configuration.
    ("scep_service", &["http", "config", "store"]),
    (
        "hsm",
        &["config", "store", "authority", "http", "pki", "scep"],
    ),
    // How people prove who they are: no core, no token, no store, no front end.
    (
        "identity",
        &[
            "authority",
            "http",
            "store",
            "config",
            "scep",
            "scep_service",
            "gateway",
            "hsm",
            "ceremony",
            "mdm",
            "pki",
        ],
    ),
    // The Intune adapter sits on the authority's external-challenge trait; it knows no front
    // end, token, store or configuration file.
    (
        "intune",
        &[
            "http",
            "store",
            "config",
            "hsm",
            "scep",
            "scep_service",
            "gateway",
            "ceremony",
            "mdm",
            "pki",
        ],
    ),
    // Profiles are an adapter on the authority: no front end, token, store or configuration.
    (
        "profiles",
        &[
            "http",
            "store",
            "config",
            "hsm",
            "gateway",
            "ceremony",
            "mdm",
            "scep_service",
        ],
    ),
    ("telemetry", &["*"]),
    ("clock", &["*"]),
    ("reason", &["*"]),
    ("wire", &["*"]),
    ("secret", &["*"]),
    ("client_address", &["*"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)]` modules.
fn product_code(text: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    let mut depth = 0i32;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if !skipping && t.starts_with("#[cfg(test)]") {
            if let Some(next) = lines.peek() {
                let n = next.trim_start();
                if n.starts_with("mod ") && n.ends_with('{') {
                    skipping = true;
                    depth = 0;
                    continue;
                }
            }
        }
        if skipping {
            depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
            if depth <= 0 && line.contains('}') {
                skipping = false;
            }
            continue;
        }
        let code = match t.find("//") {
            Some(0) => "",
            _ => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Files that are test modules of their parent (`#[cfg(test)] mod x;`).
fn test_files(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut tests = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for w in lines.windows(2) {
            if w[0].trim() == "#[cfg(test)]" {
                if let Some(name) = w[1]
                    .trim()
                    .strip_prefix("mod ")
                    .and_then(|r| r.strip_suffix(';'))
                {
                    let dir = if f
                        .file_name()
                        .is_some_and(|n| n == "mod.rs" || n == "lib.rs")
                    {
                        f.parent().unwrap().to_path_buf()
                    } else {
                        f.with_extension("")
                    };
                    tests.insert(dir.join(format!("{name}.rs")));
                    tests.insert(dir.join(name).join("mod.rs"));
                }
            }
        }
    }
    tests
}

fn imports() -> Imports {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let tests = test_files(&files);
    let mut map = Imports::new();
    for f in files {
        let rel = f.strip_prefix(&root).unwrap();
        let first = rel.iter().next().unwrap().to_string_lossy().to_string();
        // The crate roots and the binaries' own modules are not library modules.
        if rel.iter().count() == 1
            && ["lib.rs", "main.rs", "gateway_main.rs"].contains(&first.as_str())
        {
            continue;
        }
        let module = first.trim_end_matches(".rs").to_string();
        if module == "cli" || tests.contains(&f) {
            continue;
        }
        let code = product_code(&std::fs::read_to_string(&f).unwrap());
        let entry = map.entry(module.clone()).or_default();
        let mut rest = code.as_str();
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + 7..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != module {
                entry.insert(name);
            }
        }
    }
    map
}

/// Every broken rule, in words.
fn violations(map: &Imports) -> Vec<String> {
    let mut found = Vec::new();
    for (module, forbidden) in RULES {
        let Some(uses) = map.get(*module) else {
            continue;
        };
        for u in uses {
            let excepted = forbidden.contains(&format!("!{u}").as_str());
            if (forbidden.contains(&"*") && !excepted) || forbidden.contains(&u.as_str()) {
                found.push(format!("`{module}` imports `{u}`, which it must not"));
            }
        }
    }
    // No circle: depth-first search for a back edge.
    fn visit(
        m: &str,
        map: &Imports,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut Vec<String>,
    ) {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut circle = path[i..].to_vec();
            circle.push(m.to_string());
            found.push(format!("import circle: {}", circle.join(" → ")));
            return;
        }
        if done.contains(m) {
            return;
        }
        path.push(m.to_string());
        for next in map.get(m).into_iter().flatten() {
            visit(next, map, path, done, found);
        }
        path.pop();
        done.insert(m.to_string());
    }
    let mut done = BTreeSet::new();
    for m in map.keys() {
        visit(m, map, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

#[test]
fn modules_import_only_what_the_map_allows() {
    let map = imports();
    assert!(
        map.contains_key("authority") && map.contains_key("http"),
        "the reader found the modules: {map:?}"
    );
    let v = violations(&map);
    assert!(
        v.is_empty(),
        "the module dependency rule is broken:\n{}",
        v.join("\n")
    );
}

#[test]
fn the_rule_checker_catches_a_forbidden_import_and_a_circle() {
    let mut map = Imports::new();
    map.entry("scep".into()).or_default().insert("pki".into());
    map.entry("pki".into()).or_default().insert("scep".into());
    map.entry("http".into()).or_default().insert("store".into());
    // The one exception of `*`, and only that one.
    map.entry("scep".into())
        .or_default()
        .insert("reason".into());
    map.entry("clock".into())
        .or_default()
        .insert("reason".into());
    let v = violations(&map);
    assert!(
        !v.iter().any(|s| s.contains("`scep` imports `reason`")),
        "{v:?}"
    );
    assert!(
        v.iter().any(|s| s.contains("`clock` imports `reason`")),
        "{v:?}"
    );
    assert!(
        v.iter().any(|s| s.contains("`scep` imports `pki`")),
        "{v:?}"
    );
    assert!(
        v.iter().any(|s| s.contains("`http` imports `store`")),
        "{v:?}"
    );
    assert!(v.iter().any(|s| s.contains("import circle")), "{v:?}");
    // Comments and test modules do not count.
    let code = product_code(
        "// crate::hsm\nuse crate::clock;\n#[cfg(test)]\nmod tests {\n    use crate::store;\n}\n",
    );
    assert!(code.contains("crate::clock") && !code.contains("crate::hsm"));
    assert!(!code.contains("crate::store"));
}

/// One job per file: a file over 800 lines says why in its header (`Over 800 lines: …`).
#[test]
fn long_files_say_why() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("softhsm-tests"),
        &mut files,
    );
    let mut long = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let header: String = text
            .lines()
            .take_while(|l| l.starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        if text.lines().count() > 800 && !header.contains("Over 800 lines:") {
            long.push(format!("{} ({} lines)", f.display(), text.lines().count()));
        }
    }
    assert!(
        long.is_empty(),
        "files over 800 lines without a reason in their header:\n{}",
        long.join("\n")
    );
}
