//! Hooks: user code the runtime calls at well-defined moments.
//!
//! Hooks never run while the runtime holds an internal lock, so they may call back into
//! the runtime (invoke, query, stop).

use std::fmt;
use std::sync::Arc;

use crate::error::Error;
use crate::runtime::Ident;

/// Called exactly once for every error that no `rescue!` handled on the way up to the
/// root instance. Cancellation and dropping are not errors and are not reported.
pub(crate) type ErrorReporter = Arc<dyn Fn(&Ident, &Error) + Send + Sync + 'static>;

/// Wraps every synchronous stretch of steps; it must call the function it is given once.
pub(crate) type Transactor = Arc<dyn Fn(&mut dyn FnMut()) + Send + Sync + 'static>;

/// The hooks a runtime was started with.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) error_reporter: Option<ErrorReporter>,
    pub(crate) transactor: Option<Transactor>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("error_reporter", &self.error_reporter.is_some())
            .field("transactor", &self.transactor.is_some())
            .finish()
    }
}

impl Hooks {
    /// Runs `stretch` inside the transactor, if there is one.
    pub(crate) fn in_transaction(&self, stretch: &mut dyn FnMut()) {
        match &self.transactor {
            Some(transactor) => transactor(stretch),
            None => stretch(),
        }
    }

    pub(crate) fn report(&self, ident: &Ident, error: &Error) {
        if let Some(reporter) = &self.error_reporter {
            reporter(ident, error);
        }
    }
}
