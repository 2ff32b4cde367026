//! [`EventStream`]: the runtime's events as a `futures::Stream`, one per subscriber.
//!
//! The runtime sends each event it delivers, with its sequence number, into a tokio
//! broadcast channel (`mod.rs`); a subscriber reads it through a `broadcast::Receiver`
//! wrapped here. Sequence numbers count every event that happened, kept in the runtime's
//! backlog or not, and do two things: events from before the subscription (still on
//! their way when it was made) are skipped, and a gap between what the subscriber read
//! and what comes next is the count of events it missed, told as [`EventKind::Lagged`]
//! before the next one. The gap covers both losses: events its own buffer lost (it fell
//! behind) and events the runtime's backlog lost (the watcher fell behind; the runtime's
//! own `Lagged` event, sent with the number of the event after the loss, closes such a
//! gap even when no event follows). So, once the stream has ended, the events it gave plus
//! the counts of its `Lagged` events are exactly the events from its subscription on.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::broadcast::{self, error::RecvError};

use super::Sequenced;
use crate::events::hooks::{Event, EventKind};

/// The runtime's events, from the moment of subscribing on, as a [`Stream`]: what the
/// [watcher](crate::RuntimeBuilder::watcher) is told, in the same order (the order the
/// runtime decided the changes in). Made by [`Runtime::events`](crate::Runtime::events) on
/// a runtime built with [`event_stream`](crate::RuntimeBuilder::event_stream).
///
/// Each subscriber has its own stream and reads at its own pace, over a buffer the
/// runtime shares between them (its capacity is given to `event_stream`). A subscriber
/// that falls more than that capacity behind loses the oldest events it had not read; the
/// next item it reads is then an event of kind [`EventKind::Lagged`] with the count
/// (its ident and queue are those of the event that follows it). Events the runtime
/// itself did not keep (its backlog was full, as the watcher is told) are counted in the
/// same `Lagged` events, so the events a stream gives plus the counts of its `Lagged`
/// events are all the events from its subscription on, none counted twice. It never
/// slows the runtime or other subscribers. Dropping a stream unsubscribes it.
///
/// The stream ends, after the last events, once the runtime is gone: every `Runtime`
/// clone, and what keeps it alive (an [`Invocation`](crate::Invocation), a
/// [`PipelineHandle`](crate::PipelineHandle), an instance still running). Stopping the
/// runtime does not end it: the ends of the instances it cancels follow.
///
/// # Examples
///
/// ```
/// use futures::StreamExt;
/// use pipewright::{pipeline, EventKind, Runtime};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let runtime = Runtime::builder(()).event_stream(256).start()?;
/// let mut events = runtime.events()?;
/// let inc = pipeline!(|value: u32, _ctx: &()| { value = value + 1; });
/// runtime.invoke_pipeline(&inc, 1)?;
/// let kinds: Vec<EventKind> = events.by_ref().take(3).map(|event| event.kind().clone()).collect().await;
/// assert!(matches!(kinds[..], [EventKind::Admitted, EventKind::Started, EventKind::Finished]));
/// # Ok(())
/// # }
/// ```
#[must_use = "streams do nothing unless polled"]
pub struct EventStream {
    inner: Pin<Box<dyn Stream<Item = Event> + Send + Sync + 'static>>,
}

/// What a subscriber's stream keeps between items.
struct Subscriber {
    receiver: broadcast::Receiver<Sequenced>,
    /// The sequence number of the next event it should read.
    next: u64,
    /// An event read after a gap, given after the `Lagged` event that announces the gap.
    pending: Option<Event>,
}

impl EventStream {
    /// A stream of the events numbered `from` on, read from `receiver`.
    pub(crate) fn new(from: u64, receiver: broadcast::Receiver<Sequenced>) -> Self {
        let subscriber = Subscriber {
            receiver,
            next: from,
            pending: None,
        };
        // The receive future lives in place inside `unfold`: one allocation for the
        // stream, none per event.
        EventStream {
            inner: Box::pin(futures::stream::unfold(subscriber, next_event)),
        }
    }
}

/// The subscriber's next item: a pending event, the next event, or a `Lagged` event
/// announcing a gap before it. `None` once the runtime is gone.
async fn next_event(mut subscriber: Subscriber) -> Option<(Event, Subscriber)> {
    if let Some(event) = subscriber.pending.take() {
        return Some((event, subscriber));
    }
    loop {
        match subscriber.receiver.recv().await {
            // The runtime's backlog lost the events before `sequence` not yet accounted
            // for: this subscriber misses what it had not read of them (nothing, if they
            // came before its subscription or it already counted them in a gap).
            Ok((sequence, event)) if matches!(event.kind, EventKind::Lagged { .. }) => {
                if sequence <= subscriber.next {
                    continue;
                }
                let missed = sequence - subscriber.next;
                subscriber.next = sequence;
                let lagged = Event {
                    kind: EventKind::Lagged { missed },
                    ..event
                };
                return Some((lagged, subscriber));
            }
            Ok((sequence, event)) => {
                if sequence < subscriber.next {
                    // Happened before the subscription, delivered after it.
                    continue;
                }
                let missed = sequence - subscriber.next;
                subscriber.next = sequence + 1;
                if missed == 0 {
                    return Some((event, subscriber));
                }
                let lagged = Event {
                    ident: event.ident.clone(),
                    queue: event.queue.clone(),
                    kind: EventKind::Lagged { missed },
                };
                subscriber.pending = Some(event);
                return Some((lagged, subscriber));
            }
            // The receiver moved on to the oldest event still kept: the gap in sequence
            // numbers counts what was lost.
            Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return None,
        }
    }
}

impl Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}
