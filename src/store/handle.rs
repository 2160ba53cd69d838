//! [`StoreHandle`]: async access to a [`Store`] owned by one OS thread.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use tokio::sync::oneshot;

use super::file::{FileIdentity, WriteHealth, is_disk_error};
use super::{Store, StoreError, StoreResult};

type Job = Box<dyn FnOnce(&mut Store) + Send>;

/// How often [`StoreHandle::call`] runs a job again that lost the race for a log
/// position: each loss means another instance's write landed, so a few suffice unless
/// something writes without pause.
pub const STALE_RETRIES: u32 = 5;

enum Message {
    Run(Job),
    Shutdown(oneshot::Sender<StoreResult<()>>),
}

/// A cheap, cloneable way to run closures against the [`Store`] from async
/// code.
///
/// All closures run one at a time, in the order sent, on a dedicated thread
/// (`rotationd-store`) that owns the store: SQLite calls block, and blocking a
/// runtime worker would stall unrelated tasks. The queue is unbounded; each
/// closure should be one short unit of work (a few statements or one
/// transaction), never a wait on the network.
///
/// The thread ends when every handle is dropped or [`StoreHandle::shutdown`]
/// is called; calls after that fail with [`StoreError::Closed`].
#[derive(Debug, Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Message>,
    /// The SQLite file and its identity when opened (`None` in memory and on DynamoDB).
    file: Option<Arc<(PathBuf, FileIdentity)>>,
    writes: Arc<WriteHealth>,
}

impl StoreHandle {
    /// Opens the database on the calling thread, so a bad path or a too-new
    /// schema is reported right here, then starts the store thread.
    pub fn open(path: impl AsRef<Path>) -> StoreResult<StoreHandle> {
        StoreHandle::spawn(Store::open(path)?)
    }

    /// Moves an open store onto its own thread.
    pub fn spawn(store: Store) -> StoreResult<StoreHandle> {
        let file = store
            .path()
            .map(Path::to_path_buf)
            .zip(store.identity())
            .map(Arc::new);
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("rotationd-store".into())
            .spawn(move || run(store, rx))
            .map_err(StoreError::Thread)?;
        Ok(StoreHandle {
            tx,
            file,
            writes: Arc::default(),
        })
    }

    /// The SQLite file this handle's store opened, and its identity then: what the
    /// daemon's state guard compares the path with.
    pub fn file(&self) -> Option<(&Path, FileIdentity)> {
        self.file.as_deref().map(|(p, id)| (p.as_path(), *id))
    }

    /// Since when writes fail at the disk (full, read-only, I/O), with the last error.
    pub fn write_failures(&self) -> Option<(std::time::Instant, String)> {
        self.writes.failing(std::time::Instant::now())
    }

    /// Runs `f` on the store thread and returns its result. A panic in `f`
    /// comes back as [`StoreError::Panicked`] (an open transaction is rolled
    /// back) and the store keeps serving.
    ///
    /// With the DynamoDB backend, a job refused because another instance appended
    /// first ([`StoreError::Stale`]: nothing of it stayed) is run again on the
    /// caught-up replica, up to [`STALE_RETRIES`] times: `f` must be store work only,
    /// with no effect outside the store, which is why it is `Fn`.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl Fn(&mut Store) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (reply, result) = oneshot::channel();
        let writes = self.writes.clone();
        let job: Job = Box::new(move |store| {
            // With the DynamoDB backend the job first reads what other instances wrote,
            // and its writes reach the shared log before it returns (Store::job).
            let mut tries = 0;
            let out = loop {
                let out = catch_unwind(AssertUnwindSafe(|| store.job(&f)))
                    .unwrap_or_else(|panic| Err(StoreError::Panicked(panic_message(&*panic))));
                match out {
                    Err(StoreError::Stale { seq }) if tries < STALE_RETRIES => {
                        tries += 1;
                        tracing::debug!(
                            seq,
                            tries,
                            "another instance wrote first; running the store job again"
                        );
                        store.reset_if_in_transaction();
                    }
                    out => break out,
                }
            };
            if let Err(e) = &out
                && is_disk_error(e)
            {
                writes.failed(&e.to_string(), std::time::Instant::now());
            }
            // The caller may have stopped waiting (its task was cancelled);
            // the work is done either way.
            let _ = reply.send(out);
        });
        self.tx
            .send(Message::Run(job))
            .map_err(|_| StoreError::Closed)?;
        result.await.map_err(|_| StoreError::Closed)?
    }

    /// Finishes the closures queued before this call, closes the database and
    /// stops the thread, for every clone of this handle. Closures queued
    /// afterwards fail with [`StoreError::Closed`].
    pub async fn shutdown(&self) -> StoreResult<()> {
        let (reply, result) = oneshot::channel();
        self.tx
            .send(Message::Shutdown(reply))
            .map_err(|_| StoreError::Closed)?;
        result.await.map_err(|_| StoreError::Closed)?
    }
}

fn run(store: Store, rx: mpsc::Receiver<Message>) {
    let mut store = store;
    while let Ok(message) = rx.recv() {
        match message {
            Message::Run(job) => {
                job(&mut store);
                store.reset_if_in_transaction();
            }
            Message::Shutdown(reply) => {
                // Dropping the receiver (when this returns) fails the jobs
                // still queued, so their callers see Closed, not a hang.
                let _ = reply.send(store.close());
                return;
            }
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}
