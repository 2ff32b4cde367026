//! A root invoked with a future for its argument (`Runtime::invoke_future`): it joins its
//! queue at once (so it keeps its place in arrival order, can be cancelled, restarted,
//! replaced or refused like any invocation), and its task waits for the argument as the
//! instance's first suspension. Once the argument is there, the task drives the instance
//! like any other.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::core::contained;
use super::parked::root_join;
use super::task::Task;
use super::Core;
use crate::control::Control;
use crate::error::{BoxError, Error, InvokeError, Refused};
use crate::events::hooks::InstanceSpan;
use crate::ident::{Ident, Name};
use crate::instance::Instance;
use crate::invocation::Canceller;
use crate::invocation::Invocation;
use crate::pipeline::Pipeline;
use crate::queue::QueueOf;
use crate::registry::{Admission, Effects, EntryRef, Recorded};

type Argument<V> = Pin<Box<dyn Future<Output = Result<V, BoxError>> + Send>>;

impl<C: Send + Sync + 'static> Core<C> {
    /// Joins `pipeline`'s queue now and spawns the task that waits for `argument`, then
    /// runs the instance.
    pub(super) fn start_root_future<V, F, E>(
        self: &Arc<Self>,
        pipeline: &Pipeline<V, C>,
        name: Name,
        argument: F,
    ) -> Result<Invocation<V>, Refused<F>>
    where
        V: Clone + Send + Sync + 'static,
        F: Future<Output = Result<V, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        if self.stopped.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Refused::new(InvokeError::Stopped, argument));
        }
        let config = pipeline.config();
        let concurrency = config.concurrency;
        let QueueOf::Fixed(queue) = pipeline.queue_of() else {
            let needed = InvokeError::ArgumentNeeded {
                pipeline: name.to_string(),
                needs: "a queue per key",
            };
            return Err(Refused::new(needed, argument));
        };
        let queue: &Name = &queue;
        if concurrency.use_existing() {
            let needed = InvokeError::ArgumentNeeded {
                pipeline: name.to_string(),
                needs: "use_existing",
            };
            return Err(Refused::new(needed, argument));
        }
        let Some(executor) = self.executor() else {
            return Err(Refused::new(InvokeError::NoExecutor, argument));
        };
        let ident = self.ident(&name);
        let control = Arc::new(Control::pending(false));
        let canceller = Arc::clone(self) as Arc<dyn Canceller>;
        let at = EntryRef {
            id: ident.id,
            shard: self.registry.shard_of(queue),
        };
        if concurrency.behaviour().refuses_when_full()
            && self
                .registry
                .refuses_at_once(queue, at.shard, concurrency, &ident)
        {
            self.deliver_events();
            return Ok(Invocation::ready(
                ident,
                control,
                canceller,
                Err(Error::Dropped),
            ));
        }
        let mut fx = Effects::default();
        let join = root_join(pipeline, &ident, queue, at, Arc::clone(&control) as _);
        let admission = self.registry.join(join, &mut fx);
        self.after(&mut fx);
        let admission = match admission {
            Ok(admission) => admission,
            Err(error) => return Err(Refused::new(error, argument)),
        };
        let admitted = match admission {
            Admission::Drop => {
                let dropped = Err(Error::Dropped);
                return Ok(Invocation::ready(ident, control, canceller, dropped));
            }
            Admission::Start => true,
            Admission::Wait => false,
            // A root has no parent.
            Admission::ParentEnded => unreachable!("a root joined as an orphaned child"),
        };
        let span = InstanceSpan::joined(&ident, queue, admitted);
        span.state("suspended");
        // Waiting for the argument is its first suspension.
        control.set_suspended(true);
        drop(executor.spawn(PendingArgument {
            state: State::Argument {
                argument: Box::pin(async move { argument.await.map_err(Into::into) }),
                pipeline: pipeline.clone(),
                admitted,
                span,
            },
            ident: ident.clone(),
            at,
            control: Arc::clone(&control),
            core: Arc::clone(self),
        }));
        Ok(Invocation::running(ident, control, canceller))
    }
}

/// The task of a root invoked with a future for its argument.
struct PendingArgument<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    state: State<V, C>,
    ident: Ident,
    at: EntryRef,
    control: Arc<Control<V>>,
    core: Arc<Core<C>>,
}

enum State<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    /// Waiting for the argument.
    Argument {
        argument: Argument<V>,
        pipeline: Pipeline<V, C>,
        /// Held a slot when it joined.
        admitted: bool,
        span: InstanceSpan,
    },
    /// Running as any instance does.
    Running(Task<V, C>),
    Done,
}

impl<V, C> Future for PendingArgument<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let State::Running(task) = &mut this.state {
            return Pin::new(task).poll(cx);
        }
        let State::Argument { argument, .. } = &mut this.state else {
            return Poll::Ready(());
        };
        this.control.register(cx.waker());
        if this.control.is_cancelled() {
            this.core.hooks().cancelled_while_waiting(&this.ident);
            let cause = this.control.cancellation();
            this.end(Recorded::Cancelled(cause), cause.error());
            return Poll::Ready(());
        }
        let polled = catch_unwind(AssertUnwindSafe(|| argument.as_mut().poll(cx)));
        let value = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(Ok(value))) => value,
            Ok(Poll::Ready(Err(error))) => {
                this.fail(Error::new(error));
                return Poll::Ready(());
            }
            Err(panic) => {
                this.fail(Error::from_panic(panic));
                return Poll::Ready(());
            }
        };
        this.control.set_suspended(false);
        match contained("clone", || value.clone()) {
            Ok(kept) => this.control.set_argument(kept),
            Err(refused) => {
                this.fail(Error::new(refused));
                return Poll::Ready(());
            }
        }
        let State::Argument {
            pipeline,
            admitted,
            span,
            ..
        } = std::mem::replace(&mut this.state, State::Done)
        else {
            return Poll::Ready(());
        };
        let instance = Instance::with_span(
            pipeline,
            this.at,
            this.ident.clone(),
            Arc::clone(&this.control),
            value,
            admitted,
            span,
        );
        this.state = State::Running(Task {
            instance: Some(instance),
            core: Arc::clone(&this.core),
        });
        match &mut this.state {
            State::Running(task) => Pin::new(task).poll(cx),
            _ => Poll::Ready(()),
        }
    }
}

impl<V, C> PendingArgument<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    /// The argument failed (or panicked, or its `Clone` did): with no value to run
    /// `rescue!` or `finally!` with, the invocation fails, reported like a step's error.
    fn fail(&mut self, error: Error) {
        self.core.hooks().report(&self.ident, &error);
        self.end(Recorded::Failed(error.clone()), error);
    }

    /// Ends the invocation before it had a value: no step ran, so no `finally!` either.
    fn end(&mut self, ending: Recorded, error: Error) {
        let admitted = match std::mem::replace(&mut self.state, State::Done) {
            State::Argument { admitted, .. } => admitted || self.control.is_admitted(),
            _ => return,
        };
        let id = self.at;
        if !admitted && !matches!(ending, Recorded::Cancelled(_)) {
            self.core.withdraw(id);
        }
        self.core.finish(id, ending, None);
        self.control.complete(Err(error));
    }
}

impl<V, C> Drop for PendingArgument<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    fn drop(&mut self) {
        // The executor dropped the task while the argument was pending (it shut down):
        // nothing can wait for it any more.
        if matches!(self.state, State::Argument { .. }) {
            self.end(Recorded::Failed(Error::NoExecutor), Error::NoExecutor);
        }
    }
}

// Nothing inside is pinned: the argument future is boxed, the task is `Unpin`.
impl<V, C> Unpin for PendingArgument<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
}
