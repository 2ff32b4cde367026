//! # pipelines
//!
//! Declarative management of asynchronous and concurrent code. A [`pipeline!`] is a block
//! of steps that thread a value; the [`Runtime`] runs it, synchronously as long as no step
//! waits, on tokio once one does.
//!
//! ```
//! use pipelines::{pipeline, Runtime};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! async fn async_inc(value: i32) -> i32 {
//!     tokio::time::sleep(std::time::Duration::from_millis(100)).await;
//!     value + 1
//! }
//!
//! let inc_3 = pipeline!(|value: i32, _ctx: &()| {
//!     value + 1;
//!     async_inc(value).await;
//!     value + 1;
//! });
//! let runtime = Runtime::builder(()).register("inc-3", inc_3).start().unwrap();
//! assert_eq!(runtime.invoke("inc-3", 0).unwrap().await.unwrap(), 3);
//! # }
//! ```
//!
//! This crate re-exports [`pipelines_core`]; see the repository's `README.md` and
//! `DESIGN.md` for the concepts and the design.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

pub use pipelines_core::*;
