//! Dropping a pipeline without recursing once per level of nesting.
//!
//! A pipeline's steps are a closure, and a closure may hold other pipelines (a step that
//! nests a child captures it), so the last reference to a pipeline built by nesting
//! 10,000 levels deep would drop 10,000 levels of closures one inside the other and
//! overflow the thread's stack, although `invoke` refuses to run it
//! ([`Error::NestingTooDeep`](crate::Error::NestingTooDeep)). So drops of steps nest at
//! most [`DEFER_AT`] levels on one stack: below that, a level's steps are set aside, and
//! the outermost drop on the thread drops them one at a time once it is done, each from
//! its own shallow stack. A value built like that never crashes the process when dropped.

use std::any::Any;
use std::cell::RefCell;

/// How many drops of steps nest on one stack before deeper ones are set aside: far
/// below what a thread's stack holds, far above what real pipelines nest.
const DEFER_AT: usize = 64;

/// The drops in progress on this thread, and the steps set aside by the deepest.
#[derive(Default)]
struct Dropping {
    depth: usize,
    deferred: Vec<Box<dyn Any>>,
}

thread_local! {
    static DROPPING: RefCell<Dropping> = RefCell::default();
}

/// Leaves the depth it entered at even if a `Drop` panics.
struct Level;

impl Drop for Level {
    fn drop(&mut self) {
        let _ = DROPPING.try_with(|dropping| dropping.borrow_mut().depth -= 1);
    }
}

/// Drops `steps` (a pipeline's last reference to its steps) here, or sets it aside if
/// this thread is already [`DEFER_AT`] drops deep; the outermost drop then drops what
/// was set aside. `'static` so it can be set aside without its type.
pub(super) fn drop_steps<T: 'static>(steps: T) {
    let mut steps = Some(steps);
    let entered = DROPPING.try_with(|dropping| {
        let mut dropping = dropping.borrow_mut();
        if dropping.depth >= DEFER_AT {
            if let Some(steps) = steps.take() {
                dropping.deferred.push(Box::new(steps));
            }
            false
        } else {
            dropping.depth += 1;
            true
        }
    });
    match entered {
        // The thread is ending (its thread-locals are gone): dropped in place.
        Err(_) => drop(steps),
        Ok(false) => {}
        Ok(true) => {
            let outermost = {
                let _level = Level;
                drop(steps);
                DROPPING.with(|dropping| dropping.borrow().depth == 1)
            };
            if outermost {
                drop_deferred();
            }
        }
    }
}

/// Drops what deeper drops set aside, one at a time, each at depth one (so what it holds
/// is set aside again past the limit, never recursed into).
fn drop_deferred() {
    loop {
        let next = DROPPING.with(|dropping| {
            let mut dropping = dropping.borrow_mut();
            let next = dropping.deferred.pop();
            if next.is_some() {
                dropping.depth += 1;
            } else if dropping.deferred.capacity() > DEFER_AT {
                // A long chain was dropped: give its room back.
                dropping.deferred = Vec::new();
            }
            next
        });
        let Some(next) = next else {
            return;
        };
        let _level = Level;
        drop(next);
    }
}
