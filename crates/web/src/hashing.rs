//! A small fixed pool of threads for password hashing. Argon2id takes about 19 MiB and
//! one core per hash; running it on a few long-lived threads (rather than tokio's blocking
//! pool, which grows to hundreds of threads under a login rush) bounds both the CPU it
//! takes and the memory the allocator keeps afterwards.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send + 'static>;

pub struct HashingPool {
    sender: Mutex<mpsc::Sender<Job>>,
}

impl HashingPool {
    pub fn new(threads: usize) -> Self {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..threads.max(1) {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("voxhub-hash-{index}"))
                .spawn(move || {
                    loop {
                        let job = match receiver.lock() {
                            Ok(receiver) => receiver.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .expect("the operating system can start a hashing thread");
        }
        Self {
            sender: Mutex::new(sender),
        }
    }

    /// Runs `work` on the pool and waits for its result without blocking the async runtime.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, &'static str> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(work());
        });
        self.sender
            .lock()
            .map_err(|_| "the hashing pool is broken")?
            .send(job)
            .map_err(|_| "the hashing pool stopped")?;
        result.await.map_err(|_| "a hashing job failed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_and_return_their_results() {
        let pool = HashingPool::new(2);
        let results = futures_join(&pool).await;
        assert_eq!(results, vec![0, 2, 4, 6, 8]);
    }

    async fn futures_join(pool: &HashingPool) -> Vec<i32> {
        let mut out = Vec::new();
        for i in 0..5 {
            out.push(pool.run(move || i * 2).await.unwrap());
        }
        out
    }
}
