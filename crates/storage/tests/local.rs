//! Tests of the local-directory store: the conformance suites, then what only a local
//! backend can show (layout, permissions, temporaries left by a crash).

mod suite;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use suite::{corruption_suite, sample_content, store_suite};
use voxhub_storage::{LocalStore, ObjectId, ObjectStore, StorageError};

fn fresh_store() -> (tempfile::TempDir, LocalStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("store")).unwrap();
    (dir, store)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn temporaries(store: &LocalStore) -> Vec<String> {
    std::fs::read_dir(store.temporary_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_store_passes_the_conformance_suite() {
    let (_dir, store) = fresh_store();
    store_suite(Arc::new(store.clone())).await;
    assert!(
        temporaries(&store).is_empty(),
        "finished puts leave no temporaries"
    );
}

#[tokio::test]
async fn a_flipped_byte_is_detected_on_get_and_open() {
    let (_dir, store) = fresh_store();
    corruption_suite(&store, async |id: &ObjectId| {
        let path = store.object_path(id);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[150_000] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_truncated_object_is_detected_on_get_and_open() {
    let (_dir, store) = fresh_store();
    corruption_suite(&store, async |id: &ObjectId| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(store.object_path(id))
            .unwrap();
        file.set_len(1000).unwrap();
    })
    .await;
}

#[tokio::test]
async fn objects_live_in_a_two_level_fan_out_of_private_directories() {
    let (dir, store) = fresh_store();
    let id = store.put(b"CT slice").await.unwrap();
    let root = dir.path().join("store");
    let (fan_out, rest) = id.as_str().split_at(2);
    let expected = root.join("objects").join(fan_out).join(rest);
    assert_eq!(store.object_path(&id), expected);
    assert_eq!(std::fs::read(&expected).unwrap(), b"CT slice");
    for private in [
        root.clone(),
        root.join("objects"),
        root.join("objects").join(fan_out),
        root.join("tmp"),
    ] {
        assert_eq!(mode(&private), 0o700, "{}", private.display());
    }
    assert_eq!(mode(&expected), 0o600);
}

#[tokio::test]
async fn a_put_interrupted_midway_leaves_no_object_and_sweep_removes_its_temporary() {
    let (_dir, store) = fresh_store();
    // What a crash mid-copy leaves: part of the content in a temporary, nothing in objects/.
    let content = sample_content(64 * 1024, 7);
    let partial = store.temporary_dir().join("put-crashed");
    std::fs::write(&partial, &content[..10_000]).unwrap();
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&partial)
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();

    let id = ObjectId::for_content(&content);
    assert!(!store.exists(&id).await.unwrap());
    assert!(store.list().await.unwrap().is_empty());

    assert_eq!(
        store
            .sweep_temporaries(Duration::from_secs(600))
            .await
            .unwrap(),
        1
    );
    assert!(temporaries(&store).is_empty());
    assert!(store.list().await.unwrap().is_empty());
    // The content can then be put whole.
    assert_eq!(store.put(&content).await.unwrap(), id);
    assert_eq!(store.get(&id).await.unwrap(), content);
}

#[tokio::test]
async fn sweep_keeps_temporaries_younger_than_the_age_as_puts_may_still_be_writing_them() {
    let (_dir, store) = fresh_store();
    std::fs::write(store.temporary_dir().join("put-in-progress"), b"partial").unwrap();
    assert_eq!(
        store
            .sweep_temporaries(Duration::from_secs(600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(temporaries(&store), ["put-in-progress"]);
    assert_eq!(store.sweep_temporaries(Duration::ZERO).await.unwrap(), 1);
    assert!(temporaries(&store).is_empty());
}

#[tokio::test]
async fn a_failed_put_file_leaves_neither_object_nor_temporary() {
    let (dir, store) = fresh_store();
    // Opening a directory succeeds but reading it fails, so the failure comes mid-copy.
    let error = store.put_file(dir.path()).await.unwrap_err();
    assert!(matches!(error, StorageError::Io { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains(&dir.path().display().to_string()),
        "{error}"
    );
    let missing = dir.path().join("no such file.dcm");
    let error = store.put_file(&missing).await.unwrap_err();
    assert!(error.to_string().contains("no such file.dcm"), "{error}");
    assert!(store.list().await.unwrap().is_empty());
    assert!(temporaries(&store).is_empty());
}

#[tokio::test]
async fn objects_survive_reopening_the_store() {
    let (dir, store) = fresh_store();
    let id = store.put(b"MR series").await.unwrap();
    drop(store);
    let reopened = LocalStore::new(dir.path().join("store")).unwrap();
    assert_eq!(reopened.list().await.unwrap(), vec![id.clone()]);
    assert_eq!(reopened.get(&id).await.unwrap(), b"MR series");
}

#[tokio::test]
async fn list_ignores_files_that_are_not_objects() {
    let (dir, store) = fresh_store();
    let id = store.put(b"X-ray").await.unwrap();
    let objects = dir.path().join("store").join("objects");
    std::fs::write(objects.join("README"), b"not an object").unwrap();
    let fan_out = objects.join(&id.as_str()[..2]);
    std::fs::write(fan_out.join("notes.txt"), b"not an object").unwrap();
    std::fs::create_dir(objects.join("zz")).unwrap();
    std::fs::write(objects.join("zz").join("a".repeat(62)), b"wrong fan-out").unwrap();
    assert_eq!(store.list().await.unwrap(), vec![id]);
}
