//! Fuzzes DICOM parsing and, for what parses, pixel decoding: no input may panic, hang or
//! allocate without bound.

#![no_main]

use libfuzzer_sys::fuzz_target;
use voxhub_imaging::dicom;

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = dicom::read_bytes(std::path::Path::new("fuzz.dcm"), data) {
        let _ = dicom::pixels(&image);
    }
});
