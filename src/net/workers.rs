//! Threads that each own a single-threaded runtime and the connections handed to them.
//!
//! # Why
//! Measured on one core against nginx (issue 12): the same minimal hyper proxy reaches 0.81x of
//! nginx on tokio's work-stealing runtime and 0.99x on a current-thread runtime. A connection
//! never moves between threads here, so its tasks, timers and the upstream connection it owns
//! stay on one core's caches, and no request crosses a run-queue shared with other threads. This
//! is nginx's and pingora's worker-per-core shape.
//!
//! # Contract
//! - One acceptor (the listener's task, on whatever runtime runs it) hands each accepted
//!   connection to the worker serving the fewest connections; a connection stays on its worker
//!   until it closes. Accepting stays one queue, so `limits.max_connections` and the drain on
//!   shutdown keep one meaning.
//! - [`Workers::stop`] returns once every worker thread has ended; a worker ends when the pool
//!   is stopped, dropping whatever it still runs (the listener calls it after its drain, so that
//!   is only what outlived `limits.shutdown_grace`).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

/// Work a worker runs on its own runtime: spawns the connection's task there (so its sockets
/// register with that runtime's reactor).
type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of worker threads.
pub struct Workers {
    workers: Vec<Worker>,
    stop: watch::Sender<bool>,
}

struct Worker {
    jobs: mpsc::UnboundedSender<Job>,
    /// Connections this worker serves now.
    load: Arc<AtomicUsize>,
    ended: oneshot::Receiver<()>,
}

/// How many workers `limits.workers = 0` means: one per core this process may run on.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Workers {
    /// Starts `count` workers (at least one), named `{name}-{i}`.
    pub fn start(count: usize, name: &str) -> std::io::Result<Workers> {
        let (stop, stopped) = watch::channel(false);
        let mut workers = Vec::new();
        for i in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
            let (ended_tx, ended) = oneshot::channel();
            let mut stopped = stopped.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        loop {
                            tokio::select! {
                                job = queue.recv() => match job {
                                    Some(job) => job(),
                                    None => break,
                                },
                                _ = stopped.wait_for(|s| *s) => return,
                            }
                        }
                        let _ = stopped.wait_for(|s| *s).await;
                    });
                    // Dropping the runtime here ends whatever tasks are left.
                    drop(runtime);
                    let _ = ended_tx.send(());
                })?;
            workers.push(Worker {
                jobs,
                load: Arc::new(AtomicUsize::new(0)),
                ended,
            });
        }
        Ok(Workers { workers, stop })
    }

    /// Hands a connection to the least busy worker: `serve` runs there, building the
    /// connection's future, which counts as one connection of that worker until it completes.
    pub fn dispatch<S, F>(&self, serve: S)
    where
        S: FnOnce() -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let worker = self
            .workers
            .iter()
            .min_by_key(|w| w.load.load(Ordering::Relaxed))
            .expect("at least one worker");
        let load = worker.load.clone();
        load.fetch_add(1, Ordering::Relaxed);
        let job: Job = Box::new(move || {
            // The connection's future is made inside the task's: a future made outside and
            // awaited inside would be stored twice (its upvar and its await slot).
            tokio::spawn(async move {
                let _counted = Unload(load);
                serve().await;
            });
        });
        // A worker only stops after `stop`, which takes `self` by value: the queue is open.
        let _ = worker.jobs.send(job);
    }

    /// Stops every worker, dropping what they still run, and waits for their threads to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for w in self.workers {
            drop(w.jobs);
            let _ = w.ended.await;
        }
    }
}

/// Decrements a worker's load when its connection ends, however it ends.
struct Unload(Arc<AtomicUsize>);

impl Drop for Unload {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
