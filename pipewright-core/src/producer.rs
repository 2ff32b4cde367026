//! Producers ([SEMANTICS 6]): read items from a source by offset and publish them into a
//! bounded channel, respecting backpressure; a failure is a tagged [`Failure`] that a
//! supervisor turns into a restart at the failed offset.
//!
//! [SEMANTICS 6]: crate::semantics#6-supervision-and-producers

use std::fmt;
use std::future::Future;

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use crate::error::BoxError;
use crate::supervision::{Child, Failure};

/// Where a producer reads from: a log, a queue, a database... `read(offset)` gives the
/// item at `offset`, `Ok(None)` at the end of the data, or an error.
///
/// # Examples
///
/// ```
/// use pipewright::BoxError;
/// use pipewright::supervision::Source;
///
/// /// An in-memory log.
/// struct Log(Vec<String>);
///
/// impl Source for Log {
///     type Item = String;
///     async fn read(&mut self, offset: u64) -> Result<Option<String>, BoxError> {
///         Ok(self.0.get(offset as usize).cloned())
///     }
/// }
/// # let _ = Log(Vec::new());
/// ```
pub trait Source: Send + 'static {
    /// What the source holds.
    type Item: Send + 'static;

    /// The item at `offset`, `None` past the end.
    fn read(
        &mut self,
        offset: u64,
    ) -> impl Future<Output = Result<Option<Self::Item>, BoxError>> + Send;
}

/// A [`Source`] made of a function `offset -> future of Result<Option<item>, error>`.
///
/// ```
/// use pipewright::supervision::source_fn;
/// let numbers = source_fn(|offset: u64| async move {
///     Ok::<_, std::io::Error>((offset < 3).then_some(offset * 10))
/// });
/// # let _ = numbers;
/// ```
pub fn source_fn<F, Fut, T, E>(read: F) -> impl Source<Item = T>
where
    F: FnMut(u64) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Option<T>, E>> + Send,
    T: Send + 'static,
    E: Into<BoxError>,
{
    FnSource(read)
}

struct FnSource<F>(F);

impl<F, Fut, T, E> Source for FnSource<F>
where
    F: FnMut(u64) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Option<T>, E>> + Send,
    T: Send + 'static,
    E: Into<BoxError>,
{
    type Item = T;

    async fn read(&mut self, offset: u64) -> Result<Option<T>, BoxError> {
        (self.0)(offset).await.map_err(Into::into)
    }
}

/// Reads a [`Source`] from an offset and publishes each item into a bounded channel.
///
/// - **Backpressure**: it reserves a slot in the channel *before* reading, so it never
///   reads more than the channel can hold ahead of the consumer (capacity + the one item
///   being read).
/// - **Exactly once, in order**: the offset advances only when an item is in the channel;
///   after a failure (or a stop in the middle of a read) it resumes at the same offset.
/// - **No silent stop**: a failed read is a [`Failure`] tagged `read` with its offset; a
///   consumer that dropped the channel is a failure tagged `publish`.
///
/// A producer is a [`Child`]: run it under a [`Supervisor`](crate::supervision::Supervisor) to have
/// it restarted where it failed. It ends normally at the end of the data; dropping it
/// (its supervisor stopped or gave up) closes the channel.
///
/// # Examples
///
/// ```
/// use pipewright::Runtime;
/// use pipewright::supervision::{source_fn, ChildSpec, Producer, Restart, Supervisor};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let (sender, mut receiver) = tokio::sync::mpsc::channel(4);
/// let source = source_fn(|offset: u64| async move {
///     Ok::<_, std::io::Error>((offset < 5).then_some(offset))
/// });
/// let runtime = Runtime::builder(()).start().unwrap();
/// let producer = ChildSpec::new("numbers", Producer::new(source, sender)).restart(Restart::Transient);
/// runtime.supervise(Supervisor::new("producers").child(producer)).unwrap();
/// let mut seen = Vec::new();
/// while let Some(item) = receiver.recv().await {
///     seen.push(item);
/// }
/// assert_eq!(seen, [0, 1, 2, 3, 4]);
/// # }
/// ```
pub struct Producer<S: Source> {
    source: S,
    offset: u64,
    channel: mpsc::Sender<S::Item>,
}

impl<S: Source> fmt::Debug for Producer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl<S: Source> Producer<S> {
    /// A producer reading `source` from offset 0 into `channel`.
    pub fn new(source: S, channel: mpsc::Sender<S::Item>) -> Self {
        Producer {
            source,
            offset: 0,
            channel,
        }
    }

    /// The same producer, starting at `offset`.
    #[must_use]
    pub fn starting_at(mut self, offset: u64) -> Self {
        self.offset = offset;
        self
    }

    /// The offset of the next item to read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    async fn publish_all(&mut self) -> Result<(), Failure> {
        loop {
            // A slot first, then the read: backpressure reaches the source.
            let Ok(slot) = self.channel.reserve().await else {
                return Err(
                    Failure::new("publish", "the consumer closed the channel").at(self.offset)
                );
            };
            match self.source.read(self.offset).await {
                Ok(Some(item)) => {
                    slot.send(item);
                    self.offset += 1;
                }
                Ok(None) => return Ok(()),
                Err(error) => return Err(Failure::new("read", error).at(self.offset)),
            }
        }
    }
}

impl<S: Source> Child for Producer<S> {
    fn run(&mut self) -> BoxFuture<'_, Result<(), Failure>> {
        Box::pin(self.publish_all())
    }
}
