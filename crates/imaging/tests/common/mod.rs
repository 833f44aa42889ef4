//! Shared helpers of the imaging integration tests: finding the reference tools that
//! `.ci/run` installs (the pydicom/nibabel venv, dcm2niix) and skipping loudly without them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub const VENV: &str = "/opt/voxhub/imaging-venv";

/// Says loudly that a test could not run; in CI a missing tool is a failure, because
/// `.ci/run` installs every reference tool these tests compare with.
pub fn skip(test: &str, reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {reason}, and CI is set: .ci/run must install it");
    }
    eprintln!("\n*** SKIPPED {test}: {reason} (run .ci/run to install it) ***\n");
}

pub fn venv_python() -> Option<PathBuf> {
    let python = Path::new(VENV).join("bin/python");
    python.is_file().then_some(python)
}

/// The folder of pydicom's bundled test files, whatever the venv's Python minor version.
pub fn pydicom_test_files() -> Option<PathBuf> {
    let lib = Path::new(VENV).join("lib");
    std::fs::read_dir(lib).ok()?.flatten().find_map(|entry| {
        let folder = entry.path().join("site-packages/pydicom/data/test_files");
        folder.is_dir().then_some(folder)
    })
}

pub fn helper(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
}

pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}
