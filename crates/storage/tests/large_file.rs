//! `put_file` and `open` stream: a 50 MiB object goes in and out without the process ever
//! holding it in memory. Alone in its own test binary so that no other test moves the
//! process's peak memory.

use std::io::Write;

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use voxhub_storage::{LocalStore, ObjectId, ObjectStore};

const OBJECT_BYTES: u64 = 50 * 1024 * 1024;

/// The process's peak resident memory so far, from `/proc/self/status`.
fn peak_resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_50_mib_file_is_stored_and_read_back_without_being_held_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("store")).unwrap();

    // Written in chunks, hashing as we go, so the test itself never holds the file either.
    let source_path = dir.path().join("volume.nii");
    let mut source = std::io::BufWriter::new(std::fs::File::create(&source_path).unwrap());
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; 1024 * 1024];
    for index in 0..OBJECT_BYTES / chunk.len() as u64 {
        for (offset, byte) in chunk.iter_mut().enumerate() {
            *byte = (index as usize * 31 + offset * 7 + offset / 251) as u8;
        }
        hasher.update(&chunk);
        source.write_all(&chunk).unwrap();
    }
    source.into_inner().unwrap().sync_all().unwrap();
    let expected = ObjectId::parse(&hex::encode(hasher.finalize())).unwrap();

    // Resetting the peak (Linux's clear_refs) makes the measurement about the store alone;
    // where that is not allowed the peak so far is already small, as the file was streamed.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let baseline_kib = peak_resident_kib();

    let id = store.put_file(&source_path).await.unwrap();
    assert_eq!(id, expected);
    assert_eq!(store.size(&id).await.unwrap(), OBJECT_BYTES);

    let mut reader = store.open(&id).await.unwrap();
    let mut read_hasher = Sha256::new();
    let mut read_bytes = 0u64;
    loop {
        let count = reader.read(&mut chunk).await.unwrap();
        if count == 0 {
            break;
        }
        read_hasher.update(&chunk[..count]);
        read_bytes += count as u64;
    }
    assert_eq!(read_bytes, OBJECT_BYTES);
    assert_eq!(hex::encode(read_hasher.finalize()), id.as_str());

    let growth_mib = (peak_resident_kib() - baseline_kib) / 1024;
    assert!(
        growth_mib < 16,
        "storing and reading a 50 MiB object raised peak memory by {growth_mib} MiB; it must stream"
    );
}
