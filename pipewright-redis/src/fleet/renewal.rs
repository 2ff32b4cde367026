//! The member's renewer: one task that renews all the member's leases and waiting places,
//! a batch per queue (one call for all the member's ids in it) every third of the lease
//! ttl, looks again just after the first lease in a queue expires, and cancels a holder
//! (or fails a waiter) whose lease (or place) it could not confirm in time.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::lease::ttl_millis;
use super::registry::{Batch, Cancellation, Renewed};
use super::{lock, scripts, Member};

/// Runs until the member is gone (its `Drop` wakes this task to notice).
pub(crate) async fn run(member: Weak<Member>, wake: Arc<Notify>) {
    let mut calls = FuturesUnordered::new();
    loop {
        let next = {
            let Some(member) = member.upgrade() else {
                return;
            };
            let due = lock(&member.registry).due(Instant::now());
            cancel(due.cancels);
            for batch in due.batches {
                calls.push(renew(
                    member.connection.clone(),
                    Arc::clone(&member.id),
                    batch,
                ));
            }
            due.wake
        };
        // Nothing to renew: sleep until woken.
        let sleep = tokio::time::sleep_until(
            next.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400)),
        );
        tokio::select! {
            () = sleep => {}
            () = wake.notified() => {}
            Some((batch, reply)) = calls.next(), if !calls.is_empty() => {
                let Some(member) = member.upgrade() else {
                    return;
                };
                let cancels = lock(&member.registry).apply(batch, reply);
                cancel(cancels);
            }
        }
    }
}

async fn renew(
    connection: redis::aio::ConnectionManager,
    member: Arc<str>,
    batch: Batch,
) -> (Batch, Result<Renewed, String>) {
    let reply = scripts::renew(
        connection,
        batch.keys(),
        scripts::Renewal {
            ttl_ms: ttl_millis(batch.ttl()),
            member: &member,
            waiters: batch.waiters,
            full: batch.full,
        },
        batch.ids.iter().map(|(_, _, id)| &**id),
    )
    .await
    .map_err(|error| chain(&error));
    (batch, reply)
}

/// An error and its sources, as one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Cancellations run outside the registry's lock (a cancelled instance's `finally!`
/// takes it).
fn cancel(cancels: Vec<Cancellation>) {
    for (cancel, reason) in cancels {
        cancel(reason);
    }
}
