//! Fuzzes zip expansion with the default limits: whatever the archive, every entry either
//! reaches the callback with a safe path or is skipped, and nothing panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use voxhub_imaging::archive::{self, ArchiveLimits};

fuzz_target!(|data: &[u8]| {
    let _ = archive::expand(
        std::io::Cursor::new(data),
        &ArchiveLimits::default(),
        |path, _bytes| {
            assert!(!path.is_empty() && !path.starts_with('/'));
            assert!(path.split('/').all(|part| !part.is_empty() && part != ".."));
            Ok::<(), ()>(())
        },
    );
});
