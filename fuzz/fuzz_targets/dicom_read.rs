//! Fuzzes DICOM parsing, then what an upload does with what parses: pixel decoding, and
//! de-identification (with the Clean Descriptors option) and writing back, as ingest
//! does. No input may panic, hang or allocate without bound.

#![no_main]

use libfuzzer_sys::fuzz_target;
use voxhub_imaging::deid::DeidConfig;
use voxhub_imaging::{dicom, ingest};

fuzz_target!(|data: &[u8]| {
    let name = std::path::Path::new("fuzz.dcm");
    if let Ok(image) = dicom::read_bytes(name, data) {
        let _ = dicom::pixels(&image);
        let config = DeidConfig {
            secret: b"fuzzing secret".to_vec(),
            clean_descriptors: true,
            ..DeidConfig::default()
        };
        let _ = ingest::prepare_dicom("fuzz.dcm", data, Some(&config));
    }
});
