//! A queue's statistics for introspection, kept under its gauge's lock (`gauge.rs`): read
//! by `Runtime::queue_info`, written where an instance ends (the registry, or a quick run
//! through the gauge).

use crate::error::Error;
use crate::ident::Ident;
use crate::introspection::KeptResult;

/// Per-queue statistics for introspection.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) performed: u64,
    pub(crate) last_result: Option<KeptResult>,
    pub(crate) last_error: Option<Error>,
    pub(crate) last_cancelled: Option<Ident>,
}
