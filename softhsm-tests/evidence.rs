//! The evidence documents name only tests that exist: every `module::test` path written in
//! backticks in `docs/threat-model.md` and `docs/security.md` is a test of this suite
//! (`softhsm-tests/<module>.rs`, or the module itself for `module::*`) or a unit test or test
//! module under `src/`. A renamed or deleted test fails here, not in front of an assessor.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Backticked `a::b…` paths of lower-case segments (a `*` may end one).
fn named_paths(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.contains("::")
                && s.split("::").all(|seg| {
                    !seg.is_empty()
                        && (seg == "*"
                            || seg
                                .chars()
                                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                })
        })
        .map(str::to_string)
        .collect()
}

fn read_tree(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            read_tree(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&p).unwrap();
            out.push((p, text));
        }
    }
}

/// Does the path name something that exists? A test of this suite by its file and function,
/// or an item of the library (a test, a test module, or a function named in prose, like
/// `store::verify_audit`): its top-level module exists and a function or module of that name
/// is somewhere under `src/`.
fn exists(path: &str, suite: &[(PathBuf, String)], src: &[(PathBuf, String)]) -> bool {
    let segs: Vec<&str> = path.split("::").collect();
    let last = *segs.last().unwrap_or(&"");
    let suite_file = root().join("softhsm-tests").join(format!("{}.rs", segs[0]));
    // A suite test is `file::function`; a longer path whose first segment is also a library
    // module (`gateway::config::tests::…`) is the library's.
    if suite_file.exists() && segs.len() <= 2 {
        let text = suite
            .iter()
            .find(|(p, _)| *p == suite_file)
            .map(|(_, t)| t.as_str())
            .unwrap_or("");
        return last == "*" || text.contains(&format!("fn {last}("));
    }
    // A library path: its first segment is a top-level module, and the last names a function
    // or a module (a `tests` module, or `*` for every test of that module).
    let top = root().join("src").join(segs[0]);
    if !top.exists() && !root().join("src").join(format!("{}.rs", segs[0])).exists() {
        return false;
    }
    last == "*"
        || src.iter().any(|(_, t)| {
            t.contains(&format!("fn {last}("))
                || t.contains(&format!("fn {last}<"))
                || t.contains(&format!("mod {last}"))
        })
}

#[test]
fn the_threat_model_and_the_security_notes_name_only_tests_that_exist() {
    let mut suite = Vec::new();
    read_tree(&root().join("softhsm-tests"), &mut suite);
    let mut src = Vec::new();
    read_tree(&root().join("src"), &mut src);
    let mut checked = 0;
    let mut missing = Vec::new();
    for doc in ["docs/threat-model.md", "docs/security.md"] {
        let text = std::fs::read_to_string(root().join(doc)).unwrap();
        for path in named_paths(&text) {
            checked += 1;
            if !exists(&path, &suite, &src) {
                missing.push(format!("{doc}: `{path}`"));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} paths found: is the pattern right?"
    );
    assert!(
        missing.is_empty(),
        "named but not found:\n{}",
        missing.join("\n")
    );
    // The check itself can fail.
    assert!(!exists("trust_model::no_such_test", &suite, &src));
    assert!(!exists("nosuchmodule::x", &suite, &src));
}
