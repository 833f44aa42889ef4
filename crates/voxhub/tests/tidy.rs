//! Cheap checks that keep the codebase tidy: every Rust file says what it owns in a `//!`
//! line, no line ends in whitespace, and crate dependencies flow one way.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_comment_and_has_no_trailing_whitespace() {
    let mut files = Vec::new();
    rust_files(&workspace_root().join("crates"), &mut files);
    assert!(files.len() > 20, "found the sources: {}", files.len());
    let mut problems = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        if !text.starts_with("//!") {
            problems.push(format!(
                "{}: does not start with a `//!` line saying what it owns",
                file.display()
            ));
        }
        for (number, line) in text.lines().enumerate() {
            if line.ends_with(' ') || line.ends_with('\t') {
                problems.push(format!(
                    "{}:{}: trailing whitespace",
                    file.display(),
                    number + 1
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The names of a crate's normal dependencies.
fn dependencies(name: &str) -> Vec<String> {
    let path = workspace_root()
        .join("crates")
        .join(name)
        .join("Cargo.toml");
    let manifest: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
    manifest
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn crate_dependencies_flow_one_way() {
    let core = dependencies("core");
    for forbidden in [
        "voxhub-store",
        "voxhub-web",
        "sqlx",
        "axum",
        "tokio",
        "reqwest",
    ] {
        assert!(
            !core.iter().any(|d| d == forbidden),
            "core does no I/O and depends on no other voxhub crate, but uses {forbidden}"
        );
    }
    let store = dependencies("store");
    for forbidden in ["voxhub-web", "axum", "maud", "reqwest"] {
        assert!(
            !store.iter().any(|d| d == forbidden),
            "store knows nothing of HTTP, but uses {forbidden}"
        );
    }
    assert!(
        !dependencies("web").iter().any(|d| d == "voxhub"),
        "web does not depend on the binary"
    );
    let scheduler = dependencies("scheduler");
    assert!(
        scheduler.is_empty(),
        "the scheduler is a pure function with no dependencies, but uses {scheduler:?}"
    );
    let exec = dependencies("exec");
    for forbidden in [
        "voxhub-core",
        "voxhub-store",
        "voxhub-web",
        "voxhub-scheduler",
        "sqlx",
        "axum",
    ] {
        assert!(
            !exec.iter().any(|d| d == forbidden),
            "executors never touch the database or HTTP, but exec uses {forbidden}"
        );
    }
    let storage = dependencies("storage");
    for forbidden in ["voxhub-core", "voxhub-store", "voxhub-web", "sqlx", "axum"] {
        assert!(
            !storage.iter().any(|d| d == forbidden),
            "object storage knows nothing of HTTP, SQL or the domain, but uses {forbidden}"
        );
    }
    let imaging = dependencies("imaging");
    for forbidden in [
        "voxhub-core",
        "voxhub-store",
        "voxhub-web",
        "sqlx",
        "axum",
        "tokio",
    ] {
        assert!(
            !imaging.iter().any(|d| d == forbidden),
            "the imaging library knows nothing of HTTP or SQL, but uses {forbidden}"
        );
    }
}
