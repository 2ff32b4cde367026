//! # pipelines-redis
//!
//! Fleet scale for [`pipelines`]: queues whose behaviour and `max` hold across every
//! runtime connected to the same Redis, and a Redis Streams source for producers.
//!
//! # Features
//!
//! - `testing`: [`testing::RedisServer`], a throwaway `redis-server` on a free loopback
//!   port, for tests, benches and examples.
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
