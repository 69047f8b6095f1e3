//! A bounded pool for pixel work. Decoding and encoding are CPU-bound and a multi-frame
//! object can take seconds and hundreds of MiB: run on the async runtime they would stall
//! every association, and run unbounded a burst of retrieves would multiply that memory.
//! At most `workers` jobs run at once (on tokio's blocking threads); the others wait their
//! turn without holding a thread. Memory per job: see docs/PIXELS.md.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// Limits concurrent pixel jobs.
#[derive(Debug, Clone)]
pub struct PixelPool {
    permits: Arc<Semaphore>,
    workers: usize,
}

/// A job could not run to completion.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// The job panicked or the runtime is shutting down.
    #[error("pixel job failed: {0}")]
    Join(String),
}

impl PixelPool {
    /// A pool running at most `workers` jobs at once (at least one).
    pub fn new(workers: usize) -> Self {
        let workers = workers.max(1);
        PixelPool {
            permits: Arc::new(Semaphore::new(workers)),
            workers,
        }
    }

    /// One worker per core.
    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    /// The number of jobs that may run at once.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Run `job` on a blocking thread once a worker is free.
    pub async fn run<T, F>(&self, job: F) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| PoolError::Join(e.to_string()))?;
        tokio::task::spawn_blocking(job)
            .await
            .map_err(|e| PoolError::Join(e.to_string()))
    }
}

impl Default for PixelPool {
    fn default() -> Self {
        Self::per_core()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_workers_jobs_run_at_once() {
        let pool = PixelPool::new(2);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let jobs = (0..8).map(|_| {
            let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
            tokio::spawn(async move {
                pool.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            })
        });
        for j in jobs.collect::<Vec<_>>() {
            j.await.unwrap().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }
}
