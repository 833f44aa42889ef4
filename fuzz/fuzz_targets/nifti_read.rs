//! Fuzzes the NIfTI reader (plain and gzip, NIfTI-1 and NIfTI-2) and the sniffer.

#![no_main]

use libfuzzer_sys::fuzz_target;
use voxhub_imaging::{nifti_read, sniff};

fuzz_target!(|data: &[u8]| {
    let _ = sniff::kind("fuzz.nii.gz", data);
    if let Ok(read) = nifti_read::read_bytes("fuzz.nii", data) {
        let g = &read.volume.geometry;
        assert_eq!(
            read.volume.voxels.len(),
            g.columns as usize * g.rows as usize * g.order.len()
        );
    }
});
