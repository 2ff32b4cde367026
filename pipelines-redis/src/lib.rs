#![doc = include_str!("../README.md")]
//!
//! # Guarantees and limits
//!
//! - **Max and behaviour, fleet-wide.** Admission runs in one Lua script per request, so
//!   Redis decides each admission atomically: at most `max` leases per queue at any
//!   moment of Redis's history ([`FleetStats::peak`] records the most there ever were).
//! - **Leases.** A slot is a lease with a time to live, renewed every third of it by the
//!   member that holds it and released in the wrapper's `finally!`. A member that dies
//!   stops renewing: its leases expire, and the next script run by any member (waiters
//!   look just after the first lease in their queue expires) hands the slots on.
//! - **Safety over liveness.** An instance whose lease cannot be confirmed for two
//!   thirds of its time to live (Redis out of reach), or is found gone, is cancelled
//!   (its `finally!` runs); it stops while the lease still protects it, unless its
//!   process is paused longer than that (GC-like stalls, a suspended VM): then another
//!   holder may already run. Steps that write to storage should pass the **fencing
//!   token** ([`Fleet::lease`]) and have the storage refuse a token below one it has seen.
//! - **Fencing tokens** increase per queue, also across a restart of Redis that lost its
//!   data (a token is never below Redis's clock in microseconds), as long as Redis's
//!   clock does not go back.
//! - **Wake-ups** are messages (Redis pub/sub to the member's own channel); a message is
//!   lost if the member is disconnected when it is sent, so after every (re)subscription
//!   each waiting instance looks where it stands, and each looks anyway every third of
//!   its lease's time to live.
//! - **Redis unreachable**: a new invocation fails with
//!   [`FleetError::Unavailable`] (inside [`pipelines::Error::Failed`]); a waiting one
//!   fails so once its waiting place has expired; the client reconnects by itself.
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
pub use stream::{RedisStreamSource, StreamEntry, StreamError, StreamSourceBuilder};

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
