#![doc = include_str!("../README.md")]
//!
//! # Guarantees and limits
//!
//! What follows is how this crate keeps section 7 of the contract,
//! [SEMANTICS 7](pipewright::semantics#7-fleet-scale-on-redis), and where it stops.
//!
//! - **Max and behaviour, fleet-wide.** Admission runs in a Lua function (one Redis
//!   Functions library, so Redis 7.0 or later), so Redis decides each admission
//!   atomically: at most `max` leases per queue at any moment of Redis's history
//!   ([`FleetStats::peak`] records the most there ever were). One call, one round trip,
//!   admits when a slot is free; requests of one member to one queue made while such a
//!   call is on the wire go together in the next call, in arrival order.
//! - **Leases.** A slot is a lease with a time to live, renewed every third of it by the
//!   member that holds it (one call per queue for all the member's leases there) and
//!   released in the wrapper's `finally!`. A member that dies stops renewing: its leases
//!   expire, and the next call in that queue by any member (waiters look just after the
//!   first lease in their queue expires) hands the slots on. The member counts a lease's
//!   time from when it sent the call that gave or renewed it, so its local deadline is
//!   never later than Redis's expiry; an admission whose answer came so late that less
//!   than a third of the ttl is left before that deadline (its request waited on the wire
//!   for a reconnection, say) is renewed before its instance starts, instead of starting
//!   and being cancelled at once.
//! - **Release without waiting.** The caller's result does not wait for the release's
//!   round trip: the release is on the member's connection before the result is
//!   delivered, so Redis runs it before anything the member sends later (its next
//!   admission, [`Fleet::stats`]), but another member may find the slot taken a little
//!   longer (a dropping queue may refuse it). A process that ends, or crashes, before
//!   its releases reach Redis leaves those slots taken until their leases expire;
//!   [`Fleet::sync`] waits until Redis has run them.
//! - **Waiting places** are kept while their member renews them (all its places in a
//!   queue together, every third of the lease ttl); a dead member's waiting instances
//!   are dropped once its places expire, so they never hold up the queue longer.
//! - **Safety over liveness.** An instance whose lease cannot be confirmed for two
//!   thirds of its time to live (Redis out of reach), or is found gone, is cancelled
//!   (its `finally!` runs); it stops while the lease still protects it, unless its
//!   process is paused, or too busy to handle Redis's answers, longer than that: then
//!   another holder may already run. Steps that write to storage should pass the
//!   **fencing token** ([`Fleet::lease`]) and have the storage refuse a token below one
//!   it has seen.
//! - **Fencing tokens** increase per queue, also across a restart of Redis that lost its
//!   data (a token is never below Redis's clock in microseconds), as long as Redis's
//!   clock does not go back.
//! - **Wake-ups** are messages (Redis pub/sub to the member's own channel), reliable
//!   while the member is connected; a message is lost if the member is disconnected when
//!   it is sent, so after every (re)subscription the member looks where each of its
//!   waiting instances stands.
//! - **Redis unreachable**: a new invocation fails with
//!   [`FleetError::Unavailable`] (inside [`pipewright::Error::Failed`]); a waiting one
//!   fails so once its waiting place has expired; the client reconnects by itself.
//! - **Stream entries are acknowledged when the consumer is done with them**, never
//!   because they entered a channel: a [`StreamEntry`] stays pending in its consumer
//!   group until [`StreamEntry::ack`] is called on it or a clone (the first call counts),
//!   typically in the `finally!` of the pipeline that processed it. Acknowledgements go
//!   in batches (one `XACK` per batch: after 5 ms or 100 of them by default), sent by a
//!   task that lives while the source or any of its entries does;
//!   [`StreamAcks::flush`] waits for them. An entry dropped unacknowledged (a panic, a
//!   receiver dropped with entries in its channel), or whose acknowledgement had not
//!   reached Redis when its process died, stays pending: once idle for `claim_after` it
//!   is claimed (by this consumer too, if it dropped it) and delivered again, flagged
//!   [`StreamEntry::redelivered`], with its id. A consumer never claims back the
//!   entries it has handed out and is not done with; `claim_after` must exceed the
//!   longest an entry takes from its read to its acknowledgement (waiting in the channel
//!   included), or another consumer may claim it and process it a second time. Exactly
//!   once while the consumers live; at least once across a crash of any process
//!   (nothing acknowledged is lost): deduplicate by id.
//! - **One Redis primary.** Replication is asynchronous: after a failover the new
//!   primary may have lost the latest admissions, and two members may then hold what
//!   should be one slot until the lost leases' holders finish; tokens may repeat. Redis
//!   Cluster is not supported (a queue's keys share one hash slot, but the member
//!   channels are not sharded).
//!
//! # Features
//!
//! - `testing`: [`testing::RedisServer`], a throwaway `redis-server` on a free loopback
//!   port, for tests, benches and examples.
//!
// Without `testing` there is no module to link to: the link points to this section.
#![cfg_attr(not(feature = "testing"), doc = "[`testing::RedisServer`]: #features")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod fleet;
mod stream;

pub use error::FleetError;
pub use fleet::{AuditEntry, Fleet, FleetBuilder, FleetQueue, FleetStats, Lease};
pub use stream::{RedisStreamSource, StreamAcks, StreamEntry, StreamError, StreamSourceBuilder};

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
