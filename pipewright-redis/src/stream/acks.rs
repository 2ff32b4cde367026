//! Acknowledgements: what a source, its entries and its [`StreamAcks`] handles share (the
//! acknowledger's queue and the ids handed out and not yet done with), and the
//! acknowledger, a task that sends them in batches, one `XACK` per batch, on a connection
//! of its own (the source's blocks in its reads).

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::RedisError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::StreamError;

/// How many times a batch is sent before its entries are left pending (the connection
/// reconnects by itself between tries).
const TRIES: usize = 3;
const RETRY_AFTER: Duration = Duration::from_millis(100);

pub(super) enum Command {
    Ack(String),
    Flush(oneshot::Sender<Result<(), StreamError>>),
}

/// Shared by a source, every entry it handed out and every [`StreamAcks`]: the
/// acknowledger's queue closes (and the acknowledger sends what is left, then ends) when
/// the last of them is dropped.
pub(super) struct Acks {
    queue: mpsc::UnboundedSender<Command>,
    in_flight: Arc<InFlight>,
}

/// The ids read by this consumer and not yet done with (neither acknowledged in Redis nor
/// dropped unacknowledged): the source never hands one of them out again, so that its own
/// `XAUTOCLAIM` cannot deliver an entry that is still in its channel or being processed.
/// And the acknowledgements that could not be sent since the last flush.
#[derive(Default)]
pub(super) struct InFlight {
    ids: Mutex<HashSet<String>>,
    unsent: AtomicUsize,
    failure: Mutex<Option<RedisError>>,
}

impl InFlight {
    fn ids(&self) -> MutexGuard<'_, HashSet<String>> {
        // A panic elsewhere while it was held leaves a valid set.
        self.ids.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn failed(&self, count: usize, error: Option<RedisError>) {
        self.unsent.fetch_add(count, Ordering::Relaxed);
        if let Some(error) = error {
            *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
        }
    }

    /// The failures since the last flush, taken.
    fn take_failures(&self) -> Result<(), StreamError> {
        let count = self.unsent.swap(0, Ordering::Relaxed);
        let source = self
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if count == 0 {
            Ok(())
        } else {
            Err(StreamError::Ack { count, source })
        }
    }
}

impl Acks {
    /// The shared handle, and the acknowledger to spawn.
    pub(super) fn start(
        connection: ConnectionManager,
        stream: String,
        group: String,
        batch: usize,
        interval: Duration,
    ) -> (
        Arc<Acks>,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (queue, commands) = mpsc::unbounded_channel();
        let in_flight = Arc::new(InFlight::default());
        let acknowledger = Acknowledger {
            connection,
            stream,
            group,
            batch,
            interval,
            in_flight: Arc::clone(&in_flight),
        };
        (
            Arc::new(Acks { queue, in_flight }),
            acknowledger.run(commands),
        )
    }

    /// Records `id` as handed out; `false` if it is already (the source's own claim
    /// found an entry it still has in flight).
    pub(super) fn take_out(&self, id: &str) -> bool {
        self.in_flight.ids().insert(id.to_owned())
    }

    /// Queues `id`'s acknowledgement.
    pub(super) fn ack(&self, id: &str) {
        if self.queue.send(Command::Ack(id.to_owned())).is_err() {
            // The acknowledger is gone (its tokio runtime shut down): the entry stays
            // pending and will be delivered again.
            self.in_flight.failed(1, None);
            self.forget(id);
        }
    }

    /// An entry dropped without acknowledgement: pending in Redis still, it may be
    /// claimed again, by this consumer too.
    pub(super) fn forget(&self, id: &str) {
        self.in_flight.ids().remove(id);
    }

    pub(super) async fn flush(&self) -> Result<(), StreamError> {
        let (done, answer) = oneshot::channel();
        if self.queue.send(Command::Flush(done)).is_err() {
            return self.in_flight.take_failures();
        }
        match answer.await {
            Ok(result) => result,
            Err(_) => self.in_flight.take_failures(),
        }
    }
}

/// A handle on a [`RedisStreamSource`](super::RedisStreamSource)'s acknowledgements, to
/// wait until they have reached Redis (before the process exits, or before reading the
/// group's pending entries from elsewhere). Cheap to clone; it keeps the source's
/// acknowledger alive as its entries do.
///
/// ```no_run
/// use pipewright_redis::RedisStreamSource;
///
/// # async fn run() -> Result<(), pipewright_redis::StreamError> {
/// let source = RedisStreamSource::builder("redis://127.0.0.1:6379/", "clicks", "indexers", "indexer-1")
///     .connect()
///     .await?;
/// let acks = source.acks();
/// // ... the source goes to a producer; the consumer acknowledges what it is done with ...
/// acks.flush().await?; // every acknowledgement made so far has been answered by Redis
/// # Ok(())
/// # }
/// # let _ = run;
/// ```
#[derive(Clone)]
pub struct StreamAcks {
    pub(super) acks: Arc<Acks>,
}

impl fmt::Debug for StreamAcks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamAcks")
            .field("in_flight", &self.acks.in_flight.ids().len())
            .finish()
    }
}

impl StreamAcks {
    /// Sends at once the acknowledgements waiting for their batch, and resolves once Redis
    /// has answered every acknowledgement made before this call.
    ///
    /// ```no_run
    /// # async fn run(acks: pipewright_redis::StreamAcks) {
    /// if let Err(error) = acks.flush().await {
    ///     // Those entries stay pending: they will be delivered again, flagged.
    ///     eprintln!("{error}");
    /// }
    /// # }
    /// # let _ = run;
    /// ```
    ///
    /// # Errors
    ///
    /// [`StreamError::Ack`] when acknowledgements made since the previous flush (of any
    /// handle of this source) could not be sent.
    pub async fn flush(&self) -> Result<(), StreamError> {
        self.acks.flush().await
    }

    /// How many entries this consumer has read and is not done with yet: in the source,
    /// in the channel, being processed, or acknowledged but not yet answered by Redis.
    ///
    /// ```no_run
    /// # fn show(acks: &pipewright_redis::StreamAcks) {
    /// println!("{} entries in flight", acks.in_flight());
    /// # }
    /// # let _ = show;
    /// ```
    pub fn in_flight(&self) -> usize {
        self.acks.in_flight.ids().len()
    }
}

struct Acknowledger {
    connection: ConnectionManager,
    stream: String,
    group: String,
    batch: usize,
    interval: Duration,
    in_flight: Arc<InFlight>,
}

impl Acknowledger {
    /// Until the queue closes: waits for an acknowledgement, gathers more for up to the
    /// interval (or until the batch is full, or a flush is asked), sends them in one
    /// `XACK`, and answers the flushes. One `XACK` at a time: what comes meanwhile goes
    /// in the next.
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut ids: Vec<String> = Vec::new();
        let mut flushes = Vec::new();
        let mut open = true;
        while open {
            match commands.recv().await {
                Some(command) => take(command, &mut ids, &mut flushes),
                None => break,
            }
            let deadline = Instant::now() + self.interval;
            while open && ids.len() < self.batch && flushes.is_empty() {
                tokio::select! {
                    command = commands.recv() => match command {
                        Some(command) => take(command, &mut ids, &mut flushes),
                        // The last handle is gone: send what is left.
                        None => open = false,
                    },
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
            if !ids.is_empty() {
                self.send(&ids).await;
                ids.clear();
            }
            for flush in flushes.drain(..) {
                let _ = flush.send(self.in_flight.take_failures());
            }
        }
    }

    async fn send(&mut self, ids: &[String]) {
        let mut result: redis::RedisResult<()> = Ok(());
        for attempt in 1..=TRIES {
            let mut command = redis::cmd("XACK");
            command.arg(&self.stream).arg(&self.group).arg(ids);
            result = command.query_async(&mut self.connection).await;
            match &result {
                Err(error) if attempt < TRIES && transient(error) => {
                    tokio::time::sleep(RETRY_AFTER).await;
                }
                _ => break,
            }
        }
        if let Err(error) = result {
            self.in_flight.failed(ids.len(), Some(error));
        }
        // Done with, either way: acknowledged, or pending in Redis and free to be claimed.
        let mut in_flight = self.in_flight.ids();
        for id in ids {
            in_flight.remove(id);
        }
    }
}

fn take(
    command: Command,
    ids: &mut Vec<String>,
    flushes: &mut Vec<oneshot::Sender<Result<(), StreamError>>>,
) {
    match command {
        Command::Ack(id) => ids.push(id),
        Command::Flush(done) => flushes.push(done),
    }
}

fn transient(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
}
