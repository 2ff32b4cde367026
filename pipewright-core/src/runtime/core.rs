//! [`Core`], the runtime's shared state: the glue between the registry, which decides,
//! and the instances, which run. It joins instances to their queues, runs a root's first
//! stretch inline, starts nested children, and carries out the registry's decisions
//! (signals, events, drops) after the lock is released.

use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio_util::sync::CancellationToken;

use super::builder::Registered;
use super::current::FrameView;
use super::ids::Ids;
use super::route::Route;
use super::task::Task;
use super::Current;
use crate::cancel_reason::{CancelReason, Cancellation};
use crate::control::sharing::Sharing;
use crate::control::{Control, ErasedControl};
use crate::error::{Error, InvokeError, Refused};
use crate::events::hooks::{Hooks, InstanceSpan};
use crate::events::EventLog;
use crate::ident::{Ident, Name};
use crate::instance::{ChildStart, Completion, Instance, Port};
use crate::introspection::InstanceState;
use crate::invocation::Canceller;
use crate::invocation::Invocation;
use crate::pipeline::{ArgsIdentity, Pipeline};
use crate::queue::{FastMap, QueueOf};
use crate::registry::{
    Admission, Effects, EntryRef, Garbage, Gauge, Join, QueueId, Recorded, Registry,
};

/// The outcome of joining a queue.
enum Joined<V, C> {
    Run(Instance<V, C>, Arc<Control<V>>),
    Shared {
        ident: Ident,
        sharing: Sharing<V>,
    },
    Dropped(Ident, Arc<Control<V>>),
    /// Refused by a full dropping queue before anything was built.
    Refused(Ident, V),
    /// An unwaited child of a parent that is cancelling or gone: not started.
    ParentEnded,
}

/// Whose child a joining instance is, and whether anybody waits for it.
#[derive(Clone, Copy)]
struct ChildOf {
    parent: EntryRef,
    detached: bool,
    /// A detached child or a fork.
    unwaited: bool,
}

/// Where a `use_existing` join looks: its queue (on `shard`, at `slot` if resolved at
/// registration), for live instances of `pipeline_key` whose argument hashes to `hash`.
#[derive(Clone, Copy)]
struct Search<'a> {
    queue: &'a Name,
    shard: usize,
    slot: Option<usize>,
    hash: u64,
    pipeline_key: usize,
}

/// What a `use_existing` join found in its queue.
enum Lookup<V> {
    /// A live instance with an equal argument, now shared.
    Shared(Ident, Sharing<V>),
    /// Nothing to share: join, if the queue's generation is still this one.
    Join(u64),
    /// The instance found ended before it could be shared: look again.
    Again,
}

/// The runtime's shared state. Instances reach it through `&Core`, handles through
/// `Arc<dyn Canceller>`.
pub(crate) struct Core<C> {
    /// In an `Arc` so that a waiting step's future can own a share of it.
    pub(super) context: Arc<C>,
    pub(super) pipelines: FastMap<Arc<str>, Registered>,
    pub(super) hooks: Hooks,
    pub(super) executor: Option<tokio::runtime::Handle>,
    pub(super) stopped: AtomicBool,
    /// Cancelled when the runtime stops; each supervisor's stop signal is a child of it.
    pub(super) shutdown: CancellationToken,
    /// Instance ids, from per-thread blocks (`ids.rs`).
    pub(super) ids: Ids,
    /// Internally locked: a shard per group of queues, and the tree lock.
    pub(super) registry: Registry,
    /// The events (also recorded into by the registry), when a watcher or event streams
    /// read them.
    pub(super) events: Option<Arc<EventLog>>,
    /// Root invocations may run without an entry when nothing could see them (no
    /// watcher, no event stream, no transactor): see `quick_run.rs`.
    pub(super) quick_runs: bool,
    /// Told of registry changes once the runtime is stopped, for `shutdown`.
    pub(super) drained: tokio::sync::Notify,
}

/// The interpreter's port (`instance/port.rs`), as the runtime answers it.
impl<C: Send + Sync + 'static> Port<C> for Arc<Core<C>> {
    fn context(&self) -> &Arc<C> {
        Core::context(self)
    }

    fn current<'a, V>(
        &'a self,
        at: EntryRef,
        view: &'a FrameView<'a, V, C>,
    ) -> Option<Current<'a, V, C>> {
        Some(Current::lent(self, at, view))
    }

    fn start_child<V>(
        &self,
        parent: EntryRef,
        pipeline: Pipeline<V, C>,
        value: V,
    ) -> ChildStart<V, C>
    where
        V: Clone + Send + Sync + 'static,
    {
        Core::start_child(self, parent, pipeline, value)
    }

    /// The control block's flag (set by the driver) is what introspection reads; the
    /// registry hears of it only when events are recorded (a watcher or event streams),
    /// in order with everything else it decides.
    fn set_state(&self, at: EntryRef, state: InstanceState) {
        if self.events.is_some() {
            self.registry.set_state(at, state);
            self.deliver_events();
        }
    }

    fn cancel(&self, at: EntryRef, reason: CancelReason) -> bool {
        let mut fx = Effects::default();
        let cancelled = self.registry.cancel(at, reason, &mut fx);
        self.after(&mut fx);
        cancelled
    }

    fn cancel_below(&self, at: EntryRef, cause: Cancellation) {
        let mut fx = Effects::default();
        self.registry.cancel_below(at, cause, &mut fx);
        self.after(&mut fx);
    }

    fn withdraw(&self, at: EntryRef) {
        Core::withdraw(self, at);
    }

    fn finish(
        &self,
        at: EntryRef,
        ending: Recorded,
        result: Option<Arc<dyn ErasedControl>>,
    ) -> Option<Cancellation> {
        Core::finish(self, at, ending, result)
    }

    fn await_children(&self, at: EntryRef) -> bool {
        self.registry.await_children(at)
    }

    fn cancelled_while_waiting(&self, ident: &Ident) {
        self.hooks().cancelled_while_waiting(ident);
    }
}

impl<C: Send + Sync + 'static> Canceller for Core<C> {
    fn cancel(&self, ident: &Ident, reason: CancelReason) -> bool {
        self.cancel_ident(ident, reason)
    }
}

impl<C: Send + Sync + 'static> Core<C> {
    pub(crate) fn context(&self) -> &Arc<C> {
        &self.context
    }

    pub(crate) fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Carries out what the registry decided, after the lock was released: signals, then
    /// events, then drops the references the registry let go of.
    /// Taken by reference: `Effects` is a few hundred bytes, moved into a call it would
    /// be copied on every invocation, though it is almost always empty.
    pub(super) fn after(&self, fx: &mut Effects) {
        let garbage = (!fx.is_empty()).then(|| std::mem::take(fx).apply());
        self.deliver_events();
        if let Some(garbage) = garbage.filter(|garbage| !garbage.is_empty()) {
            self.drop_garbage(garbage);
        }
        self.wake_shutdown();
    }

    /// Drops values the runtime kept (a queue's last result, an argument). Their `Drop` is
    /// user code: a panic there is reported, for the instance whose end let go of them,
    /// and changes no outcome (the instance it belonged to has already ended).
    fn drop_garbage(&self, garbage: Garbage) {
        let ident = garbage.on_behalf_of.clone();
        for reference in garbage.into_references() {
            self.drop_kept(reference, ident.as_ref());
        }
    }

    /// Drops one value the runtime kept, reporting a panicking `Drop` for `on_behalf_of`.
    pub(super) fn drop_kept<T>(&self, value: T, on_behalf_of: Option<&Ident>) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(move || drop(value))) {
            let ident = on_behalf_of
                .cloned()
                .unwrap_or_else(|| self.ident(&Name::Static("pipewright")));
            let error = Error::from_hook_panic("drop of a value the runtime kept", panic);
            self.hooks.report(&ident, &error);
        }
    }

    /// Delivers recorded events in order, one at a time (see `events` for who delivers
    /// what).
    pub(super) fn deliver_events(&self) {
        if let Some(log) = &self.events {
            log.deliver(&self.hooks, || self.executor());
        }
    }

    /// Tells the watcher about something outside the queues (supervision).
    pub(crate) fn emit(&self, ident: &Ident, queue: &Name, kind: crate::events::hooks::EventKind) {
        self.registry.emit_named(ident, queue, kind);
        self.deliver_events();
    }

    /// A fresh ident for something the runtime does not run as an instance.
    pub(crate) fn ident(&self, name: &Name) -> Ident {
        Ident {
            name: name.clone(),
            id: self.ids.next(),
        }
    }

    pub(super) fn cancel_ident(&self, ident: &Ident, reason: CancelReason) -> bool {
        let mut fx = Effects::default();
        let cancelled = self.registry.cancel_ident(ident, reason, &mut fx);
        self.after(&mut fx);
        cancelled
    }

    /// Takes `id` out of its queue without cancelling its tree (it could not wait).
    pub(crate) fn withdraw(&self, at: EntryRef) {
        let mut fx = Effects::default();
        self.registry.withdraw(at, &mut fx);
        self.after(&mut fx);
    }

    /// Records how `id` ended; the cancellation, if one was accepted before its value
    /// arrived (the value must then be reported as that cancellation).
    pub(crate) fn finish(
        &self,
        at: EntryRef,
        ending: Recorded,
        result: Option<Arc<dyn ErasedControl>>,
    ) -> Option<Cancellation> {
        let mut fx = Effects::default();
        let cancelled_first = self.registry.finish(at, ending, result, &mut fx);
        self.after(&mut fx);
        cancelled_first
    }

    /// Joins `pipeline`'s queue with `argument` and builds the instance, or says why not.
    fn join<V>(
        &self,
        pipeline: Pipeline<V, C>,
        name: Name,
        argument: V,
        child_of: Option<ChildOf>,
        resolved: Option<QueueId>,
    ) -> Result<Joined<V, C>, Refused<V>>
    where
        V: Clone + Send + Sync + 'static,
    {
        // Every refusal below happens while the argument is still here: it goes back.
        macro_rules! or_refuse {
            ($result:expr) => {
                match $result {
                    Ok(value) => value,
                    Err(error) => return Err(Refused::new(error, argument)),
                }
            };
        }
        let config = pipeline.config();
        let (queue, keyed) = match pipeline.queue_of() {
            QueueOf::Fixed(queue) => (queue, false),
            // User code: called before the lock is taken.
            QueueOf::Keyed(key) => {
                let key = or_refuse!(contained("queue key", || key(&argument)));
                (Cow::Owned(Name::Shared(Arc::from(key))), true)
            }
        };
        let queue: &Name = &queue;
        let concurrency = config.concurrency;
        let identity = match (concurrency.use_existing(), config.identity) {
            (false, _) => None,
            (true, Some(identity)) => Some(identity),
            (true, None) => or_refuse!(Err(InvokeError::InvalidConcurrency {
                queue: queue.to_string(),
                concurrency,
                problem: "arguments cannot be compared",
            })),
        };
        let hash = match identity {
            Some(identity) => Some(or_refuse!(contained("hash", || (identity.hash)(&argument)))),
            None => None,
        };
        let id = self.ids.next();
        let ident = Ident { name, id };
        // A queue resolved at registration: no name to hash for its shard and slot.
        let resolved = resolved.filter(|_| !keyed);
        let at = EntryRef {
            id,
            shard: resolved.map_or_else(|| self.registry.shard_of(queue), |queue| queue.shard),
        };
        if identity.is_none() && concurrency.behaviour().refuses_when_full() {
            // A full dropping queue refuses before anything is built or cloned.
            let refused = self
                .registry
                .refuses_at_once(queue, at.shard, concurrency, &ident);
            if refused {
                self.deliver_events();
                return Ok(Joined::Refused(ident, argument));
            }
        }
        // Built once it joins: a caller that shares a live instance needs none.
        let mut control: Option<Arc<Control<V>>> = None;
        let pipeline_key = pipeline.key();
        // A caller that shares a live instance needs no effects either.
        let (admission, control, mut fx) = loop {
            let mut generation = None;
            if let (Some(hash), Some(identity)) = (hash, identity) {
                let search = Search {
                    queue,
                    shard: at.shard,
                    slot: resolved.map(|queue| queue.slot),
                    hash,
                    pipeline_key,
                };
                match or_refuse!(self.look_for_existing(&search, &identity, &argument)) {
                    Lookup::Shared(ident, sharing) => return Ok(Joined::Shared { ident, sharing }),
                    Lookup::Again => continue,
                    Lookup::Join(current) => generation = Some(current),
                }
            }
            let joining = match control.take() {
                Some(control) => control,
                None => Arc::new(Control::new(
                    or_refuse!(contained("clone", || argument.clone())),
                    false,
                )),
            };
            let join = Join {
                at,
                ident: &ident,
                queue,
                keyed,
                concurrency,
                control: Arc::clone(&joining) as Arc<dyn ErasedControl>,
                parent: child_of.map(|child_of| child_of.parent),
                detached: child_of.is_some_and(|child_of| child_of.detached),
                unwaited: child_of.is_some_and(|child_of| child_of.unwaited),
                cancel_on_shutdown: config.cancel_on_shutdown,
                existing: hash,
                pipeline_key,
            };
            let mut fx = Effects::default();
            let joined = match generation {
                Some(generation) => self.registry.join_if_current(join, generation, &mut fx),
                None => self.registry.join(join, &mut fx).map(Some),
            };
            match joined {
                Ok(Some(admission)) => break (admission, joining, fx),
                // An instance to share may have joined since: look again.
                Ok(None) => control = Some(joining),
                Err(error) => return Err(Refused::new(error, argument)),
            }
        };
        self.after(&mut fx);
        Ok(match admission {
            Admission::Drop => Joined::Dropped(ident, control),
            Admission::ParentEnded => Joined::ParentEnded,
            Admission::Start | Admission::Wait => {
                let admitted = admission == Admission::Start;
                // The span first: `queue` may borrow from `pipeline`, which moves in.
                let span = InstanceSpan::joined(&ident, queue, admitted);
                let instance = Instance::with_span(
                    pipeline,
                    at,
                    ident,
                    Arc::clone(&control),
                    argument,
                    admitted,
                    span,
                );
                Joined::Run(instance, control)
            }
        })
    }

    /// `use_existing`: looks for a live instance whose argument equals `argument`, and
    /// shares it if one is found and still live.
    fn look_for_existing<V>(
        &self,
        search: &Search<'_>,
        identity: &ArgsIdentity<V>,
        argument: &V,
    ) -> Result<Lookup<V>, InvokeError>
    where
        V: Clone + Send + Sync + 'static,
    {
        let Search {
            queue,
            shard,
            slot,
            hash,
            pipeline_key,
        } = *search;
        let existing = self
            .registry
            .existing_candidates(queue, shard, slot, hash, pipeline_key);
        // Equality is user code: compared without the lock, then validated.
        let found = contained("eq", || {
            existing.candidates.iter().find_map(|candidate| {
                let control = candidate.control.as_any().downcast_ref::<Control<V>>()?;
                let equal = control
                    .argument()
                    .is_some_and(|other| (identity.eq)(other, argument));
                equal.then_some(candidate)
            })
        })?;
        let Some(shared) = found.and_then(|found| {
            let control = Arc::clone(&found.control)
                .into_any()
                .downcast::<Control<V>>();
            Some((found.ident.clone(), control.ok()?))
        }) else {
            return Ok(Lookup::Join(existing.generation));
        };
        let (ident, control) = shared;
        // Joined as a sharer only while it is still live and unfinished (its queue's
        // generation says so), under the lock that keeps it so.
        let joined = self
            .registry
            .share_if_current(queue, &existing, || control.add_sharer());
        Ok(if joined {
            Lookup::Shared(ident, Sharing::new(control))
        } else {
            Lookup::Again
        })
    }

    /// A root invocation, on the route [`route`](Core::route) chooses (`route.rs` says
    /// what each route does and where it first polls the instance).
    pub(crate) fn start_root<V>(
        self: &Arc<Self>,
        pipeline: &Pipeline<V, C>,
        name: &Name,
        argument: V,
        queue: Option<&Arc<Gauge>>,
    ) -> Result<Invocation<V>, Refused<V>>
    where
        V: Clone + Send + Sync + 'static,
    {
        if self.is_stopped() {
            return Err(Refused::new(InvokeError::Stopped, argument));
        }
        // A queue resolved at registration serves only while the pipeline's configuration
        // is the one it was resolved with.
        let queue = queue.filter(|gauge| gauge.concurrency == pipeline.config().concurrency);
        match self.route(pipeline, name, queue) {
            Err(error) => return Err(Refused::new(error, argument)),
            Ok(Route::Quick(at)) => return self.start_quick(pipeline, name, &at, argument),
            Ok(Route::Refused) => return Ok(Invocation::refused(self.ident(name), argument)),
            Ok(Route::Parked(at)) => {
                return self.start_parked(pipeline, name, &at.name, at.gauge.id, argument)
            }
            Ok(Route::Ordinary) => {}
        }
        let canceller = || Arc::clone(self) as Arc<dyn Canceller>;
        let resolved = queue.map(|gauge| gauge.id);
        let joined = self.join(pipeline.clone(), name.clone(), argument, None, resolved)?;
        let (instance, control) = match joined {
            Joined::Run(instance, control) => (instance, control),
            Joined::Shared { ident, sharing } => {
                return Ok(Invocation::shared(ident, sharing, canceller()))
            }
            Joined::Refused(ident, argument) => return Ok(Invocation::refused(ident, argument)),
            Joined::Dropped(ident, control) => {
                let dropped = Err(Error::Dropped);
                return Ok(Invocation::ready(ident, control, canceller(), dropped));
            }
            // A root has no parent.
            Joined::ParentEnded => unreachable!("a root joined as an orphaned child"),
        };
        let runs_now = instance.is_admitted();
        Ok(self.carry_on(instance, control, runs_now))
    }

    /// Carries a root instance on from `invoke`: its first stretch runs here if
    /// `runs_now` (it holds a slot and waits on nothing yet); what is left waits on a
    /// task, or, for a root waiting for a slot, parked in the registry until admitted.
    pub(super) fn carry_on<V>(
        self: &Arc<Self>,
        mut instance: Instance<V, C>,
        control: Arc<Control<V>>,
        runs_now: bool,
    ) -> Invocation<V>
    where
        V: Clone + Send + Sync + 'static,
    {
        let canceller = Arc::clone(self) as Arc<dyn Canceller>;
        let ident = instance.ident().clone();
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        if runs_now && self.run_stretch(&mut instance, &mut cx).is_ready() {
            let result = self.finish_root(&ident, instance.into_completion());
            return Invocation::ready(ident, control, canceller, result);
        }
        let Some(executor) = self.executor() else {
            let result = self.run_without_executor(instance);
            return Invocation::ready(ident, control, canceller, result);
        };
        let admitted = instance.is_admitted();
        let at = instance.entry();
        let task = Task {
            instance: Some(instance),
            core: Arc::clone(self),
        };
        if admitted {
            drop(executor.spawn(task));
        } else {
            // Waiting for a slot: kept by the registry, spawned only once admitted.
            let parked = self.registry.park(at, Box::new(task));
            if let Err(parked) = parked {
                // Admitted or cancelled in the meantime.
                parked.start();
            }
        }
        Invocation::running(ident, control, canceller)
    }

    /// A nested pipeline step ([SEMANTICS 2]).
    ///
    /// [SEMANTICS 2]: crate::semantics#2-nesting
    pub(crate) fn start_child<V>(
        self: &Arc<Self>,
        parent: EntryRef,
        pipeline: Pipeline<V, C>,
        value: V,
    ) -> ChildStart<V, C>
    where
        V: Clone + Send + Sync + 'static,
    {
        let detached = pipeline.is_detached();
        let on_a_task = match self.nesting_room(detached) {
            Ok(on_a_task) => on_a_task,
            Err(too_deep) => return ChildStart::Refused(too_deep),
        };
        let name = Name::Static(pipeline.site_name());
        let child_of = ChildOf {
            parent,
            detached,
            unwaited: detached,
        };
        match self.join(pipeline, name, value, Some(child_of), None) {
            Err(refused) => ChildStart::Refused(Error::new(refused.into_error())),
            // A detached child of an instance being cancelled would outlive it: it is not
            // started, as one its queue drops is not.
            Ok(Joined::ParentEnded) => ChildStart::Detached,
            Ok(Joined::Dropped(..) | Joined::Refused(..)) if detached => ChildStart::Detached,
            Ok(Joined::Dropped(..) | Joined::Refused(..)) => ChildStart::Dropped,
            Ok(Joined::Shared { .. }) if detached => ChildStart::Detached,
            Ok(Joined::Shared { sharing, .. }) => ChildStart::Shared(sharing),
            Ok(Joined::Run(instance, _)) if detached => {
                self.run_unwaited(instance, on_a_task);
                ChildStart::Detached
            }
            Ok(Joined::Run(instance, _)) => ChildStart::Run(instance),
        }
    }

    /// A fork ([SEMANTICS 2.1]): `pipeline` started with `value` as a child of `parent`
    /// that nobody waits on, run inline until it waits, like a detached child; `detached`
    /// only says whether cancelling it climbs to `parent`.
    ///
    /// [SEMANTICS 2.1]: crate::semantics#21-a-steps-view-of-its-instance-and-continuations
    pub(crate) fn start_fork<V>(
        self: &Arc<Self>,
        parent: EntryRef,
        pipeline: Pipeline<V, C>,
        value: V,
        detached: bool,
    ) -> Result<Ident, Error>
    where
        V: Clone + Send + Sync + 'static,
    {
        // Every way into a stopped runtime is refused, a kept `Current` included.
        if self.is_stopped() {
            return Err(Error::new(InvokeError::Stopped));
        }
        let on_a_task = self.nesting_room(true)?;
        let name = Name::Static(pipeline.site_name());
        let child_of = ChildOf {
            parent,
            detached,
            unwaited: true,
        };
        match self.join(pipeline, name, value, Some(child_of), None) {
            Err(refused) => Err(Error::new(refused.into_error())),
            // The fork would be cancelled with its parent at once.
            Ok(Joined::ParentEnded) => Err(Cancellation::direct(CancelReason::ParentEnded).error()),
            Ok(Joined::Dropped(..) | Joined::Refused(..)) => Err(Error::Dropped),
            Ok(Joined::Shared { ident, .. }) => Ok(ident),
            Ok(Joined::Run(instance, _)) => {
                let ident = instance.ident().clone();
                self.run_unwaited(instance, on_a_task);
                Ok(ident)
            }
        }
    }

    /// Whether a child fits on this stack: it would be driven one level deeper. Past
    /// the limit, a child nobody waits for (`unwaited`: detached, a fork) goes to a task
    /// of its own, a fresh stack (`Ok(true)`); anything else fails.
    fn nesting_room(&self, unwaited: bool) -> Result<bool, Error> {
        let too_deep = crate::instance::driving_depth() >= crate::NESTING_LIMIT;
        let on_a_task = too_deep && unwaited && self.executor().is_some();
        if too_deep && !on_a_task {
            return Err(Error::NestingTooDeep {
                limit: crate::NESTING_LIMIT,
            });
        }
        Ok(on_a_task)
    }

    /// Runs a child nobody waits for (detached, a fork) inline within its parent's
    /// stretch, then, if it waits, on a task of its own (at once if `on_a_task`); its
    /// unhandled error goes to the error reporter.
    fn run_unwaited<V>(self: &Arc<Self>, mut instance: Instance<V, C>, on_a_task: bool)
    where
        V: Clone + Send + Sync + 'static,
    {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        if on_a_task || !instance.is_admitted() || instance.drive(self, &mut cx, None).is_pending()
        {
            self.wait_on_task(instance);
        } else {
            let ident = instance.ident().clone();
            let _ = self.finish_root(&ident, instance.into_completion());
        }
    }

    /// The ident of `id`'s parent, if it has one.
    pub(crate) fn parent_of(&self, at: EntryRef) -> Option<Ident> {
        self.registry.parent_of(at)
    }

    /// Moves a waiting detached instance to a task; without any executor, it fails.
    fn wait_on_task<V>(self: &Arc<Self>, instance: Instance<V, C>)
    where
        V: Clone + Send + Sync + 'static,
    {
        match self.executor() {
            Some(executor) => {
                drop(executor.spawn(Task {
                    instance: Some(instance),
                    core: Arc::clone(self),
                }));
            }
            None => drop(self.run_without_executor(instance)),
        }
    }

    /// Runs `instance` to its end on this thread when nothing can wait (no tokio runtime,
    /// or the one it waited on shut down): what it waits on fails with
    /// [`Error::NoExecutor`], and its error path runs synchronously (a `rescue!` or
    /// `finally!` step that waits fails the same way), so `finally!` still runs once.
    pub(super) fn run_without_executor<V>(
        self: &Arc<Self>,
        mut instance: Instance<V, C>,
    ) -> Result<V, Error>
    where
        V: Clone + Send + Sync + 'static,
    {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        while self.run_stretch(&mut instance, &mut cx).is_pending() {
            instance.fail_waiting(Error::NoExecutor, self);
        }
        let ident = instance.ident().clone();
        self.finish_root(&ident, instance.into_completion())
    }

    /// A stop signal that the runtime's stop fires too.
    pub(crate) fn stop_signal(&self) -> CancellationToken {
        self.shutdown.child_token()
    }

    /// `true` if an instance that waits could be spawned (without cloning a handle).
    pub(super) fn has_executor(&self) -> bool {
        self.executor.is_some() || tokio::runtime::Handle::try_current().is_ok()
    }

    pub(crate) fn executor(&self) -> Option<tokio::runtime::Handle> {
        tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.executor.clone())
    }

    /// Drives `instance` for one synchronous stretch, inside the transactor.
    pub(super) fn run_stretch<V>(
        self: &Arc<Self>,
        instance: &mut Instance<V, C>,
        cx: &mut Context<'_>,
    ) -> Poll<()>
    where
        V: Clone + Send + Sync + 'static,
    {
        let mut polled = None;
        let transaction = self
            .hooks
            .in_transaction(&mut || polled = Some(instance.drive(self, cx, None)));
        if let Err(panic) = transaction {
            // The transactor panicked, before or after the stretch: the instance fails
            // (its error path runs outside any transaction), or, if it had already
            // completed, the panic is reported for it.
            if !instance.fail_from_outside(panic.clone(), self) {
                self.hooks.report(instance.ident(), &panic);
            }
            return instance.drive(self, cx, None);
        }
        match polled {
            Some(polled) => polled,
            None => instance.drive(self, cx, None),
        }
    }

    /// Hands a completed root's outcome to its caller through its control block.
    pub(super) fn hand_over<V>(&self, instance: Instance<V, C>)
    where
        V: Clone + Send + Sync + 'static,
    {
        let control = instance.control();
        let ident = instance.ident().clone();
        control.complete(self.finish_root(&ident, instance.into_completion()));
    }

    /// The caller's view of a root instance's completion; reports unhandled errors.
    pub(super) fn finish_root<V>(
        &self,
        ident: &Ident,
        completion: Completion<V>,
    ) -> Result<V, Error> {
        match completion {
            Completion::Finished(value) | Completion::BrokeAll(value) => Ok(value),
            Completion::Failed(error) => {
                self.hooks.report(ident, &error);
                Err(error)
            }
            Completion::Cancelled(cause) => Err(cause.error()),
            Completion::Dropped => Err(Error::Dropped),
        }
    }
}

/// Runs user code the runtime calls on an argument before the instance exists: a panic
/// there refuses the invocation instead of unwinding through the runtime.
pub(super) fn contained<T>(
    operation: &'static str,
    code: impl FnOnce() -> T,
) -> Result<T, InvokeError> {
    catch_unwind(AssertUnwindSafe(code)).map_err(|panic| {
        let message = match Error::from_panic(panic) {
            Error::Panicked { message } => message.to_string(),
            other => other.to_string(),
        };
        InvokeError::ArgumentPanicked { operation, message }
    })
}
