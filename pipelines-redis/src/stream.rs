//! `RedisStreamSource`: a [`Source`] over a Redis stream read in a consumer group, for a
//! [`Producer`](pipelines::supervision::Producer).
//!
//! Each entry reaches one consumer of the group; a consumer acknowledges an entry once
//! its producer has put it in the channel (the producer asks for the next offset only
//! then); entries left pending by a consumer that died are claimed by another after an
//! idle time. So a group of producers in several processes delivers every entry exactly
//! once while they live, and at least once across a crash: a redelivered entry says so
//! ([`StreamEntry::redelivered`]) and keeps its id, to deduplicate by.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use pipelines::supervision::Source;
use pipelines::BoxError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::Value;
use tokio::time::Instant;

/// One entry of the stream: its id and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    id: String,
    fields: Vec<(String, Vec<u8>)>,
    redelivered: bool,
}

impl StreamEntry {
    fn from_redis(entry: StreamId, redelivered: bool) -> Self {
        let mut fields: Vec<(String, Vec<u8>)> = entry
            .map
            .into_iter()
            .map(|(name, value)| (name, bytes(value)))
            .collect();
        fields.sort();
        StreamEntry {
            id: entry.id,
            fields,
            redelivered,
        }
    }

    /// The entry's id in the stream (`millis-seq`): unique, increasing; deduplicate by it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The value of field `name`, as bytes.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_slice())
    }

    /// The value of field `name`, if it is UTF-8 text.
    pub fn field_str(&self, name: &str) -> Option<&str> {
        self.field(name)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    /// Every field, by name.
    pub fn fields(&self) -> &[(String, Vec<u8>)] {
        &self.fields
    }

    /// `true` when the entry may have been delivered before: it was pending (read by
    /// this consumer name before a restart, or claimed from a consumer that went
    /// silent), not read fresh from the stream.
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }
}

fn bytes(value: Value) -> Vec<u8> {
    match value {
        Value::BulkString(bytes) => bytes,
        Value::SimpleString(text) => text.into_bytes(),
        Value::Int(number) => number.to_string().into_bytes(),
        other => format!("{other:?}").into_bytes(),
    }
}

/// Why a stream source could not start.
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
}

/// Configures a [`RedisStreamSource`].
///
/// ```no_run
/// use std::time::Duration;
/// use pipelines_redis::RedisStreamSource;
///
/// # async fn run() -> Result<(), pipelines_redis::StreamError> {
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
}

impl StreamSourceBuilder {
    /// How long an entry must sit unacknowledged with another consumer before this one
    /// claims it (default 30 s). Longer than the slowest delivery, or a slow consumer's
    /// entries are delivered twice.
    #[must_use]
    pub fn claim_after(mut self, idle: Duration) -> Self {
        self.claim_after = idle;
        self
    }

    /// How long one read waits for new entries before it looks for entries to claim
    /// (default 1 s).
    #[must_use]
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block.max(Duration::from_millis(1));
        self
    }

    /// How many entries one read fetches at most (default 10). They wait in the source
    /// until the producer asks for them; a consumer that dies leaves them pending, to be
    /// claimed.
    #[must_use]
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// End (the producer's `Ok(None)`) once nothing new came for this long (default:
    /// never; a stream has no end).
    #[must_use]
    pub fn end_when_idle(mut self, idle: Duration) -> Self {
        self.end_when_idle = Some(idle);
        self
    }

    /// Connects (a connection of its own: its reads block) and creates the group if it
    /// does not exist, from the stream's first entry.
    ///
    /// # Errors
    ///
    /// [`StreamError::Connect`], [`StreamError::Group`].
    pub async fn connect(self) -> Result<RedisStreamSource, StreamError> {
        let client = redis::Client::open(self.url.as_str()).map_err(StreamError::Connect)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(self.block + Duration::from_secs(2))
            .set_connection_timeout(Duration::from_secs(1))
            .set_number_of_retries(1);
        let mut connection = ConnectionManager::new_with_config(client, config)
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
        Ok(RedisStreamSource {
            connection,
            config: self,
            buffer: VecDeque::new(),
            handed: None,
            own_pending_read: false,
            claim_cursor: "0-0".into(),
            last_claim: None,
            last_new: Instant::now(),
        })
    }
}

/// A [`Source`] over a Redis stream read in a consumer group: each entry reaches one
/// consumer of the group; entries left pending by a consumer that went silent are
/// claimed by another after [`claim_after`](StreamSourceBuilder::claim_after); exactly
/// once while the consumers live, at least once across a crash (a redelivered entry says
/// so, [`StreamEntry::redelivered`], and keeps its id).
///
/// The producer's offsets count the entries this source handed out; the source
/// remembers the last one until the producer asks for the next offset (it is in the
/// channel then) and acknowledges it at that moment; asked for the same offset again (a
/// supervisor restarted the producer after a failure), it hands the same entry again.
///
/// # Examples
///
/// ```no_run
/// use pipelines::Runtime;
/// use pipelines::supervision::{ChildSpec, Producer, Supervisor};
/// use pipelines_redis::RedisStreamSource;
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
/// }
/// # Ok(())
/// # }
/// # let _ = run;
/// ```
pub struct RedisStreamSource {
    connection: ConnectionManager,
    config: StreamSourceBuilder,
    buffer: VecDeque<StreamEntry>,
    /// The last entry handed out, at this offset, not yet acknowledged.
    handed: Option<(u64, StreamEntry)>,
    own_pending_read: bool,
    claim_cursor: String,
    last_claim: Option<Instant>,
    last_new: Instant,
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
        }
    }

    async fn acknowledge(&mut self, id: &str) -> redis::RedisResult<()> {
        redis::cmd("XACK")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(id)
            .query_async(&mut self.connection)
            .await
    }

    /// The next entry: buffered, else this consumer's own pending ones (once, at
    /// start), else claimed from a silent consumer, else new ones (blocking a while).
    async fn next_entry(&mut self) -> redis::RedisResult<Option<StreamEntry>> {
        loop {
            if let Some(entry) = self.buffer.pop_front() {
                return Ok(Some(entry));
            }
            if !self.own_pending_read {
                self.read_group("0", None, true).await?;
                self.own_pending_read = true;
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

    async fn read_group(
        &mut self,
        from: &str,
        block: Option<Duration>,
        redelivered: bool,
    ) -> redis::RedisResult<()> {
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
        for key in reply.map(|reply| reply.keys).unwrap_or_default() {
            self.buffer.extend(
                key.ids
                    .into_iter()
                    // A pending entry deleted from the stream comes back without fields.
                    .filter(|entry| !entry.map.is_empty())
                    .map(|entry| StreamEntry::from_redis(entry, redelivered)),
            );
        }
        Ok(())
    }

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
        self.buffer.extend(
            reply
                .claimed
                .into_iter()
                .map(|entry| StreamEntry::from_redis(entry, true)),
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
            // The producer moved on: the entry is in its channel.
            let id = entry.id.clone();
            self.acknowledge(&id).await?;
            self.handed = None;
        }
        match self.next_entry().await? {
            Some(entry) => {
                self.handed = Some((offset, entry.clone()));
                Ok(Some(entry))
            }
            None => Ok(None),
        }
    }
}
