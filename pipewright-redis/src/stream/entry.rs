//! [`StreamEntry`]: one entry of the stream, which carries its acknowledgement.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use redis::streams::StreamId;
use redis::Value;

use super::acks::Acks;

/// One entry of the stream: its id, its fields, and its acknowledgement.
///
/// The consumer **acknowledges** an entry when it is done with it ([`ack`](StreamEntry::ack));
/// until then it stays pending in the consumer group. An entry dropped without being
/// acknowledged (a panic, a receiver dropped at shutdown with entries still in the
/// channel, a crash) stays pending and is delivered again, flagged
/// [`redelivered`](StreamEntry::redelivered), to this consumer or another once it has been
/// idle for [`claim_after`](super::StreamSourceBuilder::claim_after).
///
/// Clones share the acknowledgement (a pipeline's value is cloned for its steps): the
/// first [`ack`](StreamEntry::ack) of any clone acknowledges, later ones do nothing;
/// dropping some clones does nothing while one remains.
///
/// # Examples
///
/// Acknowledge in `finally!`, once the pipeline that processed the entry has ended
/// (whatever happened; write `if error.is_none() { entry.ack(); }` instead to have a
/// failed entry delivered again after `claim_after`):
///
/// ```no_run
/// use pipewright::{pipeline, Runtime};
/// use pipewright_redis::StreamEntry;
///
/// async fn index(page: &str) -> Result<(), std::io::Error> {
///     # let _ = page;
///     Ok(())
/// }
///
/// # fn build() -> Result<(), Box<dyn std::error::Error>> {
/// let indexing = pipeline!(|entry: StreamEntry, _ctx: &()| {
///     index(entry.field_str("page").unwrap_or_default()).await?;
///     finally!(|error| {
///         entry.ack();
///     });
/// });
/// let runtime = Runtime::builder(()).register("index", indexing).start()?;
/// # let _ = runtime;
/// # Ok(())
/// # }
/// # let _ = build;
/// ```
#[derive(Clone)]
pub struct StreamEntry {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    fields: Vec<(String, Vec<u8>)>,
    redelivered: bool,
    acked: AtomicBool,
    acks: Arc<Acks>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if !*self.acked.get_mut() {
            // Left pending in Redis: free to be claimed again, by this consumer too.
            self.acks.forget(&self.id);
        }
    }
}

impl StreamEntry {
    /// The entry, if this consumer does not have it in flight already (its own claim
    /// may find entries it handed out and is not done with: they are not handed twice).
    pub(super) fn from_redis(entry: StreamId, redelivered: bool, acks: &Arc<Acks>) -> Option<Self> {
        if !acks.take_out(&entry.id) {
            return None;
        }
        let mut fields: Vec<(String, Vec<u8>)> = entry
            .map
            .into_iter()
            .map(|(name, value)| (name, bytes(value)))
            .collect();
        fields.sort();
        Some(StreamEntry {
            inner: Arc::new(Inner {
                id: entry.id,
                fields,
                redelivered,
                acked: AtomicBool::new(false),
                acks: Arc::clone(acks),
            }),
        })
    }

    /// The entry's id in the stream (`millis-seq`): unique, increasing; deduplicate by it.
    ///
    /// ```no_run
    /// # fn show(entry: &pipewright_redis::StreamEntry) {
    /// println!("entry {}", entry.id());
    /// # }
    /// # let _ = show;
    /// ```
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The value of field `name`, as bytes.
    ///
    /// ```no_run
    /// # fn show(entry: &pipewright_redis::StreamEntry) {
    /// let size = entry.field("payload").map_or(0, <[u8]>::len);
    /// # let _ = size;
    /// # }
    /// # let _ = show;
    /// ```
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.inner
            .fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_slice())
    }

    /// The value of field `name`, if it is UTF-8 text.
    ///
    /// ```no_run
    /// # fn show(entry: &pipewright_redis::StreamEntry) {
    /// let page = entry.field_str("page").unwrap_or("/");
    /// # let _ = page;
    /// # }
    /// # let _ = show;
    /// ```
    pub fn field_str(&self, name: &str) -> Option<&str> {
        self.field(name)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    /// Every field, by name.
    ///
    /// ```no_run
    /// # fn show(entry: &pipewright_redis::StreamEntry) {
    /// for (name, value) in entry.fields() {
    ///     println!("{name}: {} bytes", value.len());
    /// }
    /// # }
    /// # let _ = show;
    /// ```
    pub fn fields(&self) -> &[(String, Vec<u8>)] {
        &self.inner.fields
    }

    /// `true` when the entry may have been delivered before: it was pending (read by
    /// this consumer name before a restart, or claimed after it sat unacknowledged for
    /// `claim_after`), not read fresh from the stream. Its id is the same as at its first
    /// delivery: deduplicate by it.
    ///
    /// ```no_run
    /// # fn seen_before(id: &str) -> bool { let _ = id; false }
    /// # fn show(entry: &pipewright_redis::StreamEntry) {
    /// if entry.redelivered() && seen_before(entry.id()) {
    ///     entry.ack(); // processed already
    /// }
    /// # }
    /// # let _ = show;
    /// ```
    pub fn redelivered(&self) -> bool {
        self.inner.redelivered
    }

    /// Acknowledges the entry: the consumer is done with it, and it is removed from the
    /// group's pending entries. Call it once processing is complete (its effects stored),
    /// never before: an entry acknowledged and then lost to a crash is lost for good.
    ///
    /// The acknowledgement is queued and sent in a batch (one `XACK` for many entries,
    /// see [`ack_interval`](super::StreamSourceBuilder::ack_interval)), by a task that
    /// lives as long as the source or any of its entries; wait for it with
    /// [`StreamAcks::flush`](super::StreamAcks::flush). An acknowledgement that cannot
    /// reach Redis (the process dies first, Redis is out of reach) leaves the entry
    /// pending: it is delivered again, flagged. Only the first call on the entry or any
    /// of its clones counts; later calls send nothing.
    ///
    /// ```no_run
    /// # async fn store(entry: &pipewright_redis::StreamEntry) { let _ = entry; }
    /// # async fn consume(mut receiver: tokio::sync::mpsc::Receiver<pipewright_redis::StreamEntry>) {
    /// while let Some(entry) = receiver.recv().await {
    ///     store(&entry).await;
    ///     entry.ack();
    /// }
    /// # }
    /// # let _ = consume;
    /// ```
    pub fn ack(&self) {
        if !self.inner.acked.swap(true, Ordering::AcqRel) {
            self.inner.acks.ack(&self.inner.id);
        }
    }

    /// `true` once [`ack`](StreamEntry::ack) was called on the entry or a clone.
    ///
    /// ```no_run
    /// # fn show(entry: &pipewright_redis::StreamEntry) {
    /// if !entry.is_acked() {
    ///     println!("{} is still pending", entry.id());
    /// }
    /// # }
    /// # let _ = show;
    /// ```
    pub fn is_acked(&self) -> bool {
        self.inner.acked.load(Ordering::Acquire)
    }
}

impl fmt::Debug for StreamEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamEntry")
            .field("id", &self.inner.id)
            .field("fields", &self.inner.fields)
            .field("redelivered", &self.inner.redelivered)
            .field("acked", &self.is_acked())
            .finish()
    }
}

/// Equal when the id, the fields and the redelivered flag are (whether acknowledged or
/// not).
impl PartialEq for StreamEntry {
    fn eq(&self, other: &Self) -> bool {
        self.inner.id == other.inner.id
            && self.inner.fields == other.inner.fields
            && self.inner.redelivered == other.inner.redelivered
    }
}

impl Eq for StreamEntry {}

fn bytes(value: Value) -> Vec<u8> {
    match value {
        Value::BulkString(bytes) => bytes,
        Value::SimpleString(text) => text.into_bytes(),
        Value::Int(number) => number.to_string().into_bytes(),
        other => format!("{other:?}").into_bytes(),
    }
}
