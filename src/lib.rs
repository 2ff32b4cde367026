//! # pipewright
//!
//! Declarative management of asynchronous and concurrent code. A [`pipeline!`] is a block
//! of steps that thread a value; the [`Runtime`] runs it, synchronously as long as no step
//! waits, on tokio once one does.
//!
//! ```
//! use pipewright::{pipeline, Runtime};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! async fn async_inc(value: i32) -> i32 {
//!     tokio::time::sleep(std::time::Duration::from_millis(100)).await;
//!     value + 1
//! }
//!
//! let inc_3 = pipeline!(|value: i32, _ctx: &()| {
//!     value = value + 1;
//!     value = async_inc(value).await;
//!     value = value + 1;
//! });
//! let runtime = Runtime::builder(()).register("inc-3", inc_3).start().unwrap();
//! assert_eq!(runtime.invoke("inc-3", 0).unwrap().await.unwrap(), 3);
//! # }
//! ```
//!
//! Where to look:
//! - steps, errors, nesting: [`pipeline!`], [`Outcome`], [`Error`];
//! - queues and behaviours: [`Pipeline::restartable`], [`Pipeline::dropping`],
//!   [`Pipeline::enqueued`], [`Pipeline::keep_latest`], [`Pipeline::use_existing`],
//!   [`Pipeline::queue`], [`Queue`];
//! - the runtime, cancellation, hooks and introspection: [`Runtime`], [`RuntimeBuilder`],
//!   [`Invocation`], [`Event`], [`Runtime::events`] (a stream of them),
//!   [`Runtime::active`] (the [`introspection`] module);
//! - retries, timeouts, supervision and producers: [`Pipeline::retry`],
//!   [`Pipeline::retry_if`], [`Pipeline::timeout`], the [`supervision`] module
//!   ([`Supervisor`](supervision::Supervisor), [`Producer`](supervision::Producer));
//! - pictures of what happened: [`Timeline`].
//!
//! A restartable search, as a taste:
//!
//! ```
//! use std::time::Duration;
//! use pipewright::{pipeline, Runtime};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let search = pipeline!(|query: String, _ctx: &()| {
//!     tokio::time::sleep(Duration::from_millis(100)).await; // the request
//!     query = format!("results for {query}");
//! })
//! .restartable();
//! let runtime = Runtime::builder(()).register("search", search).start().unwrap();
//! let stale = runtime.invoke("search", "pipe".to_string()).unwrap();
//! let fresh = runtime.invoke("search", "pipelines".to_string()).unwrap();
//! assert!(stale.await.unwrap_err().is_cancelled());
//! assert_eq!(fresh.await.unwrap(), "results for pipelines");
//! # }
//! ```
//!
//! This crate re-exports [`pipewright_core`]; see the repository's `README.md` for the
//! concepts, and `ARCHITECTURE.md` and `docs/decisions/` for the design.
//!
//! # Features
//!
//! - `timeline` (on by default): [`Timeline`], a watcher that records what happened to
//!   each instance and renders it as an ASCII chart or an SVG picture.
//! - `tracing`: a `tracing` span per instance, entered while its steps run, with an event
//!   for each change of its state.
//! - `tower`: the [`service`] module: a registered pipeline as a `tower::Service`
//!   ([`PipelineHandle::into_service`]), whose readiness reflects a full dropping queue.
//!
// Without `timeline` there is no `Timeline` to link to: the link points to this section.
#![cfg_attr(not(feature = "timeline"), doc = "[`Timeline`]: #features")]
// Without `tower`, the same for its module and method.
#![cfg_attr(
    not(feature = "tower"),
    doc = "[`service`]: #features\n[`PipelineHandle::into_service`]: #features"
)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]
// docs.rs (nightly) labels the items a feature gates; stable builds never see this.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use pipewright_core::*;

/// What a user can rely on, section by section: the contract that the documentation of
/// this crate, `pipewright-core` and `pipewright-redis` cites by its section numbers (the
/// repository's `docs/SEMANTICS.md`).
///
#[doc = include_str!("../docs/SEMANTICS.md")]
pub mod semantics {}
// Also re-exported by name, so that docs.rs labels it with the feature it needs (the
// glob re-export above carries no such label).
#[cfg(feature = "tower")]
pub use pipewright_core::service;
#[cfg(feature = "timeline")]
pub use pipewright_core::Timeline;
