//! Callers sharing the result of a live instance (`use_existing`, [SEMANTICS 3.2]).
//!
//! A sharer holds the instance's control block and waits on it: no channel per sharer.
//! When the instance ends, it records *how* it ended once ([`SharedEnd`]; a finished
//! instance's value is the one its control block already keeps for the queue's
//! statistics) and wakes the sharers; each sharer then makes its own copy of the result.
//! The copy is user code (`Clone`) run by the sharer: a panicking clone is that sharer's
//! error, as it was when the instance made one copy per sharer.
//!
//! Waking: the instance sets the end, then takes the wakers under their lock; a sharer
//! registers its waker under that lock, then looks at the end again. Either the
//! registration comes first (the instance wakes it) or the end does (the sharer sees it).
//!
//! [SEMANTICS 3.2]: crate::semantics#32-behaviours

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};

use slab::Slab;

use crate::cancel_reason::Cancellation;
use crate::control::Control;
use crate::error::Error;

/// How a shared instance ended, as its sharers see it.
pub(crate) enum SharedEnd {
    /// With the value its control block keeps.
    Finished,
    Failed(Error),
    Cancelled(Cancellation),
    Dropped,
}

/// A sharer that has not polled yet.
const NO_KEY: usize = usize::MAX;

/// The sharers' side of a control block: the end, once known, and who waits for it.
pub(crate) struct Sharers {
    end: OnceLock<SharedEnd>,
    /// A sharer keeps its key, so that polling again replaces its waker in place.
    wakers: Mutex<Slab<Waker>>,
}

impl Sharers {
    pub(crate) fn new() -> Self {
        Sharers {
            end: OnceLock::new(),
            wakers: Mutex::new(Slab::new()),
        }
    }

    /// Records the end (the first one wins) and wakes every sharer.
    pub(crate) fn end(&self, end: SharedEnd) {
        let _ = self.end.set(end);
        let wakers = std::mem::take(&mut *self.lock());
        // Wakers are foreign code: woken outside the lock.
        for (_, waker) in wakers {
            waker.wake();
        }
    }

    fn ended(&self) -> Option<&SharedEnd> {
        self.end.get()
    }

    fn poll_end(&self, key: &mut usize, cx: &mut Context<'_>) -> Poll<&SharedEnd> {
        if let Some(end) = self.ended() {
            return Poll::Ready(end);
        }
        {
            let mut wakers = self.lock();
            match wakers.get_mut(*key) {
                Some(waker) => waker.clone_from(cx.waker()),
                None => *key = wakers.insert(cx.waker().clone()),
            }
        }
        match self.ended() {
            Some(end) => Poll::Ready(end),
            None => Poll::Pending,
        }
    }

    fn forget(&self, key: usize) {
        // After the end, the key may be vacant (the table was taken) or reused by a sharer
        // that saw the end right after registering: either way nobody waits on it.
        self.lock().try_remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slab<Waker>> {
        self.wakers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One caller waiting for the result of a live instance it shares.
pub(crate) struct Sharing<V> {
    control: Arc<Control<V>>,
    /// Its place among the instance's waiting sharers once it polled ([`NO_KEY`]
    /// before: slab keys are indices, far below it).
    key: usize,
    /// `V::clone`, kept here so that the handle's `Future` needs no `Clone` bound.
    copy: fn(&V) -> V,
}

impl<V> Sharing<V> {
    /// Shares the result of the instance of `control`, which must already count this
    /// caller ([`Control::add_sharer`]).
    pub(crate) fn new(control: Arc<Control<V>>) -> Self
    where
        V: Clone,
    {
        Sharing {
            control,
            key: NO_KEY,
            copy: V::clone,
        }
    }

    pub(crate) fn control(&self) -> &Arc<Control<V>> {
        &self.control
    }

    /// `true` once the shared instance has ended.
    pub(crate) fn is_finished(&self) -> bool {
        self.control.sharers().ended().is_some()
    }

    /// The result, if the shared instance has ended.
    pub(crate) fn try_result(&self) -> Option<Result<V, Error>> {
        let end = self.control.sharers().ended()?;
        Some(self.result(end))
    }

    pub(crate) fn poll_result(&mut self, cx: &mut Context<'_>) -> Poll<Result<V, Error>> {
        let control = &self.control;
        match control.sharers().poll_end(&mut self.key, cx) {
            Poll::Ready(end) => Poll::Ready(self.result(end)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn result(&self, end: &SharedEnd) -> Result<V, Error> {
        match end {
            SharedEnd::Finished => match self.control.result() {
                Some(value) => {
                    catch_unwind(AssertUnwindSafe(|| (self.copy)(value))).map_err(Error::from_panic)
                }
                None => Err(Error::new(
                    "internal error: a finished shared instance kept no value; please report \
                     this bug",
                )),
            },
            SharedEnd::Failed(error) => Err(error.clone()),
            SharedEnd::Cancelled(cancellation) => Err(cancellation.error()),
            SharedEnd::Dropped => Err(Error::Dropped),
        }
    }
}

impl<V> Drop for Sharing<V> {
    fn drop(&mut self) {
        if self.key != NO_KEY {
            self.control.sharers().forget(self.key);
        }
    }
}
