//! `RedisStreamSource`: a [`Source`] over a Redis stream read in a consumer group, for a
//! [`Producer`](pipewright::supervision::Producer).
//!
//! Each entry reaches one consumer of the group and stays pending there until the
//! consumer is **done** with it and acknowledges it ([`StreamEntry::ack`]), never merely
//! because it entered the producer's channel; entries left pending (by a consumer that
//! died, or dropped without acknowledgement) are claimed after an idle time. So a group
//! of producers in several processes delivers every entry exactly once while they live,
//! and at least once across a crash of any process: a redelivered entry says so
//! ([`StreamEntry::redelivered`]) and keeps its id, to deduplicate by.

mod acks;
mod entry;

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use pipewright::supervision::Source;
use pipewright::BoxError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamAutoClaimReply, StreamReadReply};
use tokio::time::Instant;

use acks::Acks;
pub use acks::StreamAcks;
pub use entry::StreamEntry;

/// Why a stream source could not start, or its acknowledgements could not be sent.
///
/// ```
/// use pipewright_redis::StreamError;
///
/// let error = StreamError::Ack { count: 3, source: None };
/// assert_eq!(error.to_string(), "3 acknowledgements not sent");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The first connection failed: check the URL and that Redis runs.
    #[error("cannot connect to redis")]
    Connect(#[source] redis::RedisError),
    /// The consumer group could not be created (the key holds something that is not a
    /// stream, for example). Use a key that is a stream or is free.
    #[error("cannot create group `{group}` on stream `{stream}`")]
    Group {
        /// The stream's key.
        stream: String,
        /// The group.
        group: String,
        /// What Redis said.
        #[source]
        source: redis::RedisError,
    },
    /// Acknowledgements could not be sent ([`StreamAcks::flush`]): Redis was out of reach
    /// (after a few tries), or the tokio runtime the source was connected in has shut
    /// down (no source then). Nothing is lost: those entries stay pending and are
    /// delivered again, flagged redelivered, once idle for `claim_after`.
    #[error("{count} acknowledgements not sent")]
    Ack {
        /// How many, since the previous flush.
        count: usize,
        /// What Redis said last.
        #[source]
        source: Option<redis::RedisError>,
    },
}

/// Configures a [`RedisStreamSource`].
///
/// ```no_run
/// use std::time::Duration;
/// use pipewright_redis::RedisStreamSource;
///
/// # async fn run() -> Result<(), pipewright_redis::StreamError> {
/// let source = RedisStreamSource::builder("redis://127.0.0.1:6379/", "clicks", "indexers", "indexer-1")
///     .claim_after(Duration::from_secs(30))
///     .connect()
///     .await?;
/// # let _ = source;
/// # Ok(())
/// # }
/// # let _ = run;
/// ```
#[derive(Debug, Clone)]
pub struct StreamSourceBuilder {
    url: String,
    stream: String,
    group: String,
    consumer: String,
    claim_after: Duration,
    block: Duration,
    batch: usize,
    end_when_idle: Option<Duration>,
    ack_batch: usize,
    ack_interval: Duration,
}

impl StreamSourceBuilder {
    /// How long an entry must sit unacknowledged before this consumer claims it (default
    /// 30 s). An entry's idle time counts from its delivery, so while it waits in the
    /// source and the channel and while it is processed: `claim_after` must exceed the
    /// longest that takes, or an entry still in flight here may be claimed by another
    /// consumer and processed twice (at least once: the second copy is flagged
    /// redelivered). This consumer never claims back the entries it has itself handed
    /// out and is not done with; one dropped without acknowledgement it claims again.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use pipewright_redis::RedisStreamSource;
    /// // Processing takes a minute at worst: leave a margin.
    /// let builder = RedisStreamSource::builder("redis://127.0.0.1:6379/", "clicks", "indexers", "indexer-1")
    ///     .claim_after(Duration::from_secs(180));
    /// # let _ = builder;
    /// ```
    #[must_use]
    pub fn claim_after(mut self, idle: Duration) -> Self {
        self.claim_after = idle;
        self
    }

    /// How long one read waits for new entries before it looks for entries to claim
    /// (default 1 s).
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use pipewright_redis::RedisStreamSource;
    /// let builder = RedisStreamSource::builder("redis://127.0.0.1:6379/", "clicks", "indexers", "indexer-1")
    ///     .block(Duration::from_millis(200));
    /// # let _ = builder;
    /// ```
    #[must_use]
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block.max(Duration::from_millis(1));
        self
    }

    /// How many entries one read fetches at most (default 10). They wait in the source
    /// until the producer asks for them (so a producer reads at most this many beyond
    /// what its channel holds); a consumer that dies leaves them pending, to be claimed.
    ///
    /// ```no_run
    /// # use pipewright_redis::RedisStreamSource;
    /// let builder = RedisStreamSource::builder("redis://127.0.0.1:6379/", "clicks", "indexers", "indexer-1")
    ///     .batch(50);
    /// # let _ = builder;
    /// ```
    #[must_use]
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// End (the producer's `Ok(None)`) once nothing new came for this long (default:
    /// never; a stream has no end).
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use pipewright_redis::RedisStreamSource;
    /// let builder = RedisStreamSource::builder("redis://127.0.0.1:6379/", "backfill", "loaders", "loader-1")
    ///     .end_when_idle(Duration::from_secs(5));
    /// # let _ = builder;
    /// ```
    #[must_use]
    pub fn end_when_idle(mut self, idle: Duration) -> Self {
        self.end_when_idle = Some(idle);
        self
    }

    /// How acknowledgements are batched: an acknowledgement waits up to `interval`
    /// (default 5 ms) for others to share its `XACK`, which goes at once when `batch`
    /// (default 100) are waiting. One `XACK` is on the wire at a time; what comes
    /// meanwhile goes in the next. A longer interval sends fewer calls; an entry whose
    /// acknowledgement has not reached Redis when its process dies is delivered again.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use pipewright_redis::RedisStreamSource;
    /// let builder = RedisStreamSource::builder("redis://127.0.0.1:6379/", "clicks", "indexers", "indexer-1")
    ///     .ack_interval(Duration::from_millis(20), 500);
    /// # let _ = builder;
    /// ```
    #[must_use]
    pub fn ack_interval(mut self, interval: Duration, batch: usize) -> Self {
        self.ack_interval = interval;
        self.ack_batch = batch.max(1);
        self
    }

    /// Connects (two connections of its own: one for its reads, which block, one for
    /// acknowledgements), creates the group if it does not exist (from the stream's
    /// first entry), and starts the task that sends acknowledgements. Call it inside a
    /// tokio runtime: that task lives there.
    ///
    /// ```no_run
    /// # use pipewright_redis::RedisStreamSource;
    /// # async fn run() -> Result<(), pipewright_redis::StreamError> {
    /// let source = RedisStreamSource::builder("redis://127.0.0.1:6379/", "clicks", "indexers", "indexer-1")
    ///     .connect()
    ///     .await?;
    /// # let _ = source;
    /// # Ok(())
    /// # }
    /// # let _ = run;
    /// ```
    ///
    /// # Errors
    ///
    /// [`StreamError::Connect`], [`StreamError::Group`].
    pub async fn connect(self) -> Result<RedisStreamSource, StreamError> {
        let client = redis::Client::open(self.url.as_str()).map_err(StreamError::Connect)?;
        let config = |response: Duration| {
            ConnectionManagerConfig::new()
                .set_response_timeout(response)
                .set_connection_timeout(Duration::from_secs(1))
                .set_number_of_retries(1)
        };
        let mut connection = ConnectionManager::new_with_config(
            client.clone(),
            config(self.block + Duration::from_secs(2)),
        )
        .await
        .map_err(StreamError::Connect)?;
        let acknowledging =
            ConnectionManager::new_with_config(client, config(Duration::from_secs(2)))
                .await
                .map_err(StreamError::Connect)?;
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut connection)
            .await;
        if let Err(source) = created {
            if source.code() != Some("BUSYGROUP") {
                return Err(StreamError::Group {
                    stream: self.stream,
                    group: self.group,
                    source,
                });
            }
        }
        let (acks, acknowledger) = Acks::start(
            acknowledging,
            self.stream.clone(),
            self.group.clone(),
            self.ack_batch,
            self.ack_interval,
        );
        tokio::spawn(acknowledger);
        Ok(RedisStreamSource {
            connection,
            config: self,
            buffer: VecDeque::new(),
            handed: None,
            own_pending: Some("0".into()),
            claim_cursor: "0-0".into(),
            last_claim: None,
            last_new: Instant::now(),
            acks,
        })
    }
}

/// A [`Source`] over a Redis stream read in a consumer group: each entry reaches one
/// consumer of the group and stays pending there until the consumer is done with it and
/// says so ([`StreamEntry::ack`]); entries left pending (a consumer that died, an entry
/// dropped without acknowledgement) are claimed, by this consumer or another, after
/// [`claim_after`](StreamSourceBuilder::claim_after). Exactly once while the consumers
/// live and acknowledge what they are done with; at least once across a crash of any
/// process, since nothing is acknowledged before the consumer is done with it (a
/// redelivered entry says so, [`StreamEntry::redelivered`], and keeps its id).
///
/// - **Acknowledgement**: when the consumer calls [`StreamEntry::ack`] (on the entry or
///   any clone; the first call wins), typically once the pipeline that processed the
///   entry has ended (`entry.ack()` in its `finally!`). Acknowledgements are sent in
///   batches, one `XACK` per batch, by a task that lives as long as the source or any of
///   its entries (so an acknowledgement made after the source is gone is still sent);
///   [`acks`](RedisStreamSource::acks) gives a handle to wait for them. One that never
///   reaches Redis leaves its entry pending, to be delivered again.
/// - **Dropping an entry unacknowledged** acknowledges nothing: a panic, a receiver
///   dropped at shutdown with entries in its channel, or a crash leaves them pending.
/// - **Backpressure and order**: a read fetches up to [`batch`](StreamSourceBuilder::batch)
///   entries, which wait in the source until the producer has a slot in its channel for
///   each; a consumer gets the entries it reads fresh in stream order.
/// - **Offsets**: the producer's offsets count the entries this source handed out;
///   asked for the same offset again (a supervisor restarted the producer after a
///   failure), it hands the same entry again.
///
/// # Examples
///
/// ```no_run
/// use pipewright::Runtime;
/// use pipewright::supervision::{ChildSpec, Producer, Supervisor};
/// use pipewright_redis::RedisStreamSource;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let source = RedisStreamSource::builder("redis://127.0.0.1:6379/", "clicks", "indexers", "indexer-1")
///     .connect()
///     .await?;
/// let (sender, mut receiver) = tokio::sync::mpsc::channel(64);
/// let runtime = Runtime::builder(()).start()?;
/// runtime.supervise(Supervisor::new("clicks").child(ChildSpec::new("reader", Producer::new(source, sender))))?;
/// while let Some(entry) = receiver.recv().await {
///     println!("{} {:?}", entry.id(), entry.field_str("page"));
///     entry.ack(); // done with it
/// }
/// # Ok(())
/// # }
/// # let _ = run;
/// ```
pub struct RedisStreamSource {
    connection: ConnectionManager,
    config: StreamSourceBuilder,
    buffer: VecDeque<StreamEntry>,
    /// The last entry handed out, at this offset: handed again if asked again.
    handed: Option<(u64, StreamEntry)>,
    /// Where the reading of this consumer's own pending entries (from an earlier life)
    /// stands; `None` once it is done.
    own_pending: Option<String>,
    claim_cursor: String,
    last_claim: Option<Instant>,
    last_new: Instant,
    acks: Arc<Acks>,
}

impl fmt::Debug for RedisStreamSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStreamSource")
            .field("stream", &self.config.stream)
            .field("group", &self.config.group)
            .field("consumer", &self.config.consumer)
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

impl RedisStreamSource {
    /// Starts configuring a source reading `stream` in `group` as `consumer` (a name
    /// stable across restarts of the same worker: its own pending entries come back to
    /// it first).
    ///
    /// ```no_run
    /// # use pipewright_redis::RedisStreamSource;
    /// let builder = RedisStreamSource::builder("redis://127.0.0.1:6379/", "clicks", "indexers", "indexer-1");
    /// # let _ = builder;
    /// ```
    pub fn builder(
        url: impl Into<String>,
        stream: impl Into<String>,
        group: impl Into<String>,
        consumer: impl Into<String>,
    ) -> StreamSourceBuilder {
        StreamSourceBuilder {
            url: url.into(),
            stream: stream.into(),
            group: group.into(),
            consumer: consumer.into(),
            claim_after: Duration::from_secs(30),
            block: Duration::from_secs(1),
            batch: 10,
            end_when_idle: None,
            ack_batch: 100,
            ack_interval: Duration::from_millis(5),
        }
    }

    /// A handle on this source's acknowledgements: [`StreamAcks::flush`] waits until
    /// those made so far have reached Redis. Take it before the source goes to its
    /// producer.
    ///
    /// ```no_run
    /// # use pipewright_redis::RedisStreamSource;
    /// # async fn run(source: RedisStreamSource) -> Result<(), pipewright_redis::StreamError> {
    /// let acks = source.acks();
    /// // ... the producer and the consumer run, and end ...
    /// acks.flush().await?;
    /// # Ok(())
    /// # }
    /// # let _ = run;
    /// ```
    pub fn acks(&self) -> StreamAcks {
        StreamAcks {
            acks: Arc::clone(&self.acks),
        }
    }

    /// The next entry: buffered, else this consumer's own pending ones (at start), else
    /// claimed after `claim_after`, else new ones (blocking a while).
    async fn next_entry(&mut self) -> redis::RedisResult<Option<StreamEntry>> {
        loop {
            if let Some(entry) = self.buffer.pop_front() {
                return Ok(Some(entry));
            }
            if let Some(cursor) = self.own_pending.clone() {
                // Its own history, a batch at a time, from where the last batch ended.
                self.own_pending = self.read_group(&cursor, None, true).await?;
                continue;
            }
            let claim_due = self
                .last_claim
                .map_or(true, |last| last.elapsed() >= self.config.claim_after / 2);
            if claim_due {
                self.last_claim = Some(Instant::now());
                self.claim().await?;
                if !self.buffer.is_empty() {
                    continue;
                }
            }
            let block = self.config.block;
            self.read_group(">", Some(block), false).await?;
            if !self.buffer.is_empty() {
                self.last_new = Instant::now();
                continue;
            }
            if let Some(idle) = self.config.end_when_idle {
                if self.last_new.elapsed() >= idle {
                    return Ok(None);
                }
            }
        }
    }

    /// Reads into the buffer; the id of the last entry Redis returned, if any.
    async fn read_group(
        &mut self,
        from: &str,
        block: Option<Duration>,
        redelivered: bool,
    ) -> redis::RedisResult<Option<String>> {
        let mut command = redis::cmd("XREADGROUP");
        command
            .arg("GROUP")
            .arg(&self.config.group)
            .arg(&self.config.consumer)
            .arg("COUNT")
            .arg(self.config.batch);
        if let Some(block) = block {
            command
                .arg("BLOCK")
                .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX));
        }
        command.arg("STREAMS").arg(&self.config.stream).arg(from);
        let reply: Option<StreamReadReply> = command.query_async(&mut self.connection).await?;
        let mut last = None;
        for key in reply.map(|reply| reply.keys).unwrap_or_default() {
            last = key.ids.last().map(|entry| entry.id.clone()).or(last);
            let acks = &self.acks;
            self.buffer.extend(
                key.ids
                    .into_iter()
                    // A pending entry deleted from the stream comes back without fields.
                    .filter(|entry| !entry.map.is_empty())
                    .filter_map(|entry| StreamEntry::from_redis(entry, redelivered, acks)),
            );
        }
        Ok(last)
    }

    /// Claims entries idle for `claim_after`, from any consumer of the group; those this
    /// consumer has in flight itself (handed out, not done with) come back in the reply
    /// too, and are skipped.
    async fn claim(&mut self) -> redis::RedisResult<()> {
        let idle = u64::try_from(self.config.claim_after.as_millis()).unwrap_or(u64::MAX);
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(&self.config.consumer)
            .arg(idle)
            .arg(&self.claim_cursor)
            .arg("COUNT")
            .arg(self.config.batch)
            .query_async(&mut self.connection)
            .await?;
        self.claim_cursor = reply.next_stream_id;
        let acks = &self.acks;
        self.buffer.extend(
            reply
                .claimed
                .into_iter()
                .filter(|entry| !entry.map.is_empty())
                .filter_map(|entry| StreamEntry::from_redis(entry, true, acks)),
        );
        Ok(())
    }
}

impl Source for RedisStreamSource {
    type Item = StreamEntry;

    async fn read(&mut self, offset: u64) -> Result<Option<StreamEntry>, BoxError> {
        if let Some((handed_at, entry)) = &self.handed {
            if *handed_at == offset {
                // Asked again (the producer restarted): it never reached the channel.
                return Ok(Some(entry.clone()));
            }
        }
        // The producer moved on: the last entry is in its channel, acknowledged when
        // the consumer is done with it, not here.
        self.handed = None;
        match self.next_entry().await? {
            Some(entry) => {
                self.handed = Some((offset, entry.clone()));
                Ok(Some(entry))
            }
            None => Ok(None),
        }
    }
}
