//! Fuzzes PNG and JPEG decoding: sizes are checked before decoding, nothing panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use voxhub_imaging::raster;

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = raster::read_bytes("fuzz", data) {
        assert_eq!(
            image.values.len(),
            image.columns as usize * image.rows as usize * usize::from(image.samples_per_pixel)
        );
    }
});
