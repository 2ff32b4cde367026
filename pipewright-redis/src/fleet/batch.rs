//! Admissions to one queue from one member share calls: while a call for the queue is on
//! the wire, the requests that arrive wait and go together in the next one, in arrival
//! order. An idle queue's request goes at once, from the admitting instance itself; a
//! burst costs two calls per member and queue (of a thousand requests at most) instead
//! of one per invocation.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::scripts::{self, AcquireRequest, Acquired, Keys};
use super::{lock, Member};
use crate::error::FleetError;

type Reply = Result<Acquired, FleetError>;

/// The most requests one call carries.
const BATCH: usize = 1_000;

/// The queues with a call on the wire, and the requests waiting for the next.
#[derive(Default)]
pub(crate) struct Batches(HashMap<Arc<Keys>, Vec<(AcquireRequest, oneshot::Sender<Reply>)>>);

/// Asks Redis for a slot for `request`: at once if no call for the queue is on the wire,
/// with the next call otherwise.
pub(crate) async fn acquire(
    member: &Arc<Member>,
    keys: &Arc<Keys>,
    request: AcquireRequest,
) -> Reply {
    let queued = {
        let mut batches = lock(&member.batches);
        match batches.0.get_mut(keys) {
            Some(waiting) => {
                let (sender, receiver) = oneshot::channel();
                waiting.push((request, sender));
                Err(receiver)
            }
            None => {
                batches.0.insert(Arc::clone(keys), Vec::new());
                Ok(request)
            }
        }
    };
    let request = match queued {
        Ok(request) => request,
        Err(receiver) => {
            return receiver.await.unwrap_or_else(|_| {
                Err(FleetError::Protocol {
                    queue: keys.queue.clone(),
                    reply: "the fleet member is gone".to_owned(),
                })
            })
        }
    };
    // This call is the queue's turn; whoever ends it (here, or the guard if this
    // admission is dropped meanwhile) hands the turn to the requests that arrived.
    let turn = Turn {
        member: Arc::clone(member),
        keys: Arc::clone(keys),
    };
    let reply = scripts::acquire(&member.connection, keys, std::iter::once(&request)).await;
    drop(turn);
    reply.and_then(|mut replies| {
        replies.pop().ok_or_else(|| FleetError::Protocol {
            queue: keys.queue.clone(),
            reply: "no reply".to_owned(),
        })
    })
}

/// The queue's call on the wire: when it ends, the requests that arrived meanwhile go.
struct Turn {
    member: Arc<Member>,
    keys: Arc<Keys>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut batches = lock(&self.member.batches);
        if batches.0.get(&self.keys).is_some_and(Vec::is_empty) {
            batches.0.remove(&self.keys);
            return;
        }
        drop(batches);
        let member = Arc::clone(&self.member);
        self.member.detach(flush(member, Arc::clone(&self.keys)));
    }
}

/// Sends the waiting requests, a call at a time, until none is left.
async fn flush(member: Arc<Member>, keys: Arc<Keys>) {
    loop {
        let batch = {
            let mut batches = lock(&member.batches);
            match batches.0.get_mut(&keys) {
                Some(waiting) if waiting.len() > BATCH => {
                    let rest = waiting.split_off(BATCH);
                    std::mem::replace(waiting, rest)
                }
                Some(waiting) if !waiting.is_empty() => std::mem::take(waiting),
                _ => {
                    batches.0.remove(&keys);
                    return;
                }
            }
        };
        // Requests whose admission was dropped meanwhile are not sent.
        let batch: Vec<_> = batch
            .into_iter()
            .filter(|(_, sender)| !sender.is_closed())
            .collect();
        if batch.is_empty() {
            continue;
        }
        let replies = scripts::acquire(
            &member.connection,
            &keys,
            batch.iter().map(|(request, _)| request),
        )
        .await;
        match replies {
            Ok(replies) if replies.len() == batch.len() => {
                for ((request, sender), reply) in batch.into_iter().zip(replies) {
                    if let Err(Ok(Acquired::Admitted(_) | Acquired::Waiting(_))) =
                        sender.send(Ok(reply))
                    {
                        // Dropped while its request was on the wire: withdraw it.
                        withdraw(&member, &keys, &request);
                    }
                }
            }
            Ok(_) => {
                for (_, sender) in batch {
                    let _ = sender.send(Err(FleetError::Protocol {
                        queue: keys.queue.clone(),
                        reply: "a reply per request".to_owned(),
                    }));
                }
            }
            Err(error) => {
                for (request, sender) in batch {
                    if sender.send(Err(error.copy())).is_err() {
                        // It may have reached Redis.
                        withdraw(&member, &keys, &request);
                    }
                }
            }
        }
    }
}

fn withdraw(member: &Member, keys: &Arc<Keys>, request: &AcquireRequest) {
    let payload = if request.argument.is_empty() { "" } else { "c" };
    member.detach(withdrawal(
        member.connection.clone(),
        Arc::clone(keys),
        Arc::clone(&request.id),
        payload,
    ));
}

/// Withdraws `id` (an abandoned admission) from Redis.
pub(crate) async fn withdrawal(
    connection: redis::aio::ConnectionManager,
    keys: Arc<Keys>,
    id: Arc<str>,
    payload: &'static str,
) {
    let _ = scripts::release(connection, keys, id, payload.to_owned()).await;
}
