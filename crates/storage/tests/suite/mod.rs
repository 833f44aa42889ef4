//! The conformance suite of `ObjectStore`: what every backend must do, run against each one
//! (the local directory now; an S3 backend, tested against moto, is to run it too).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use voxhub_storage::{ObjectId, ObjectStore, StorageError};

/// Content that is not all one byte, so that a shifted or truncated copy cannot pass.
pub fn sample_content(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            // xorshift64: repeatable, no dependency, good enough to make every byte matter.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

async fn read_through_open(store: &dyn ObjectStore, id: &ObjectId) -> std::io::Result<Vec<u8>> {
    let mut reader = store.open(id).await.expect("open a stored object");
    let mut content = Vec::new();
    reader.read_to_end(&mut content).await?;
    Ok(content)
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StorageError>, id: &ObjectId) {
    match result {
        Err(StorageError::NotFound { id: missing }) => assert_eq!(&missing, id),
        other => panic!("expected NotFound for {id}, got {other:?}"),
    }
}

/// Runs every backend-independent check on `store`, which must start empty.
pub async fn store_suite(store: Arc<dyn ObjectStore>) {
    assert!(
        store.list().await.unwrap().is_empty(),
        "the suite needs an empty store"
    );

    // Round trip, by every way in and out.
    let content = sample_content(100_000, 1);
    let id = store.put(&content).await.unwrap();
    assert_eq!(
        id,
        ObjectId::for_content(&content),
        "the id is the content's SHA-256"
    );
    assert_eq!(store.get(&id).await.unwrap(), content);
    assert_eq!(read_through_open(&*store, &id).await.unwrap(), content);
    assert!(store.exists(&id).await.unwrap());
    assert_eq!(store.size(&id).await.unwrap(), content.len() as u64);

    // Putting the same content again is a no-op that returns the same id.
    assert_eq!(store.put(&content).await.unwrap(), id);
    assert_eq!(store.list().await.unwrap(), vec![id.clone()]);

    // put_file gives the same id as put for the same bytes, and stores each content once.
    let mut source = tempfile::NamedTempFile::new().unwrap();
    source.write_all(&content).unwrap();
    assert_eq!(store.put_file(source.path()).await.unwrap(), id);
    let other_content = sample_content(3_000, 2);
    let mut other_source = tempfile::NamedTempFile::new().unwrap();
    other_source.write_all(&other_content).unwrap();
    let other_id = store.put_file(other_source.path()).await.unwrap();
    assert_eq!(other_id, ObjectId::for_content(&other_content));
    assert_eq!(store.get(&other_id).await.unwrap(), other_content);

    // Empty content is an object like any other.
    let empty_id = store.put(b"").await.unwrap();
    assert_eq!(store.get(&empty_id).await.unwrap(), b"");
    assert_eq!(read_through_open(&*store, &empty_id).await.unwrap(), b"");
    assert_eq!(store.size(&empty_id).await.unwrap(), 0);

    // list is sorted and holds each object once.
    let mut expected = vec![id.clone(), other_id.clone(), empty_id.clone()];
    expected.sort();
    assert_eq!(store.list().await.unwrap(), expected);

    // An absent object is NotFound, naming it, on every read.
    let absent = ObjectId::for_content(b"never stored");
    assert!(!store.exists(&absent).await.unwrap());
    assert_not_found(store.get(&absent).await, &absent);
    assert_not_found(store.size(&absent).await, &absent);
    assert_not_found(store.open(&absent).await.map(|_| ()), &absent);
    let message = store.get(&absent).await.unwrap_err().to_string();
    assert!(message.contains(absent.as_str()), "{message}");

    // Delete is idempotent, also for what never existed.
    store.delete(&other_id).await.unwrap();
    assert!(!store.exists(&other_id).await.unwrap());
    assert_not_found(store.get(&other_id).await, &other_id);
    store.delete(&other_id).await.unwrap();
    store.delete(&absent).await.unwrap();
    assert!(!store.list().await.unwrap().contains(&other_id));
    // What was deleted can be put again.
    assert_eq!(store.put(&other_content).await.unwrap(), other_id);

    // Concurrent puts of one content from several tasks all succeed, with one object.
    let shared = Arc::new(sample_content(2 * 1024 * 1024, 3));
    let shared_id = ObjectId::for_content(&shared);
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..8 {
        let store = Arc::clone(&store);
        let shared = Arc::clone(&shared);
        tasks.spawn(async move {
            if task % 2 == 0 {
                store.put(&shared).await
            } else {
                let mut source = tempfile::NamedTempFile::new().unwrap();
                source.write_all(&shared).unwrap();
                store.put_file(source.path()).await
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap().unwrap(), shared_id);
    }
    let listed = store.list().await.unwrap();
    assert_eq!(
        listed.iter().filter(|listed| **listed == shared_id).count(),
        1
    );
    assert_eq!(store.get(&shared_id).await.unwrap(), *shared);

    // A sweep that only takes old leftovers never touches objects.
    store
        .sweep_temporaries(Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(store.list().await.unwrap(), listed);
    assert_eq!(store.get(&id).await.unwrap(), content);
}

/// Checks that damaged objects are refused on every read. `damage` changes the stored bytes
/// of an object behind the store's back, in whatever way the backend allows.
pub async fn corruption_suite(store: &dyn ObjectStore, damage: impl AsyncFn(&ObjectId)) {
    let content = sample_content(300_000, 4);
    let id = store.put(&content).await.unwrap();
    damage(&id).await;

    match store.get(&id).await {
        Err(StorageError::Corrupt { id: corrupt }) => assert_eq!(corrupt, id),
        other => panic!(
            "get returned {:?} for a damaged object",
            other.map(|b| b.len())
        ),
    }
    let message = store.get(&id).await.unwrap_err().to_string();
    assert!(message.contains(id.as_str()), "{message}");

    let error = read_through_open(store, &id).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    assert_eq!(StorageError::corruption_in(&error), Some(&id));

    // Deleting and putting again repairs the object.
    store.delete(&id).await.unwrap();
    assert_eq!(store.put(&content).await.unwrap(), id);
    assert_eq!(store.get(&id).await.unwrap(), content);
}
