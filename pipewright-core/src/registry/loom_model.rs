//! Loom models of the registry's locks (`RUSTFLAGS="--cfg pipelines_loom"`, see
//! `.ci/run`): wide operations (the tree lock, then shards in any order) and operations
//! on one shard, in every interleaving loom finds. No deadlock, and the state after is
//! one that running the operations one at a time, in some order, would leave.

use std::sync::Arc;

use loom::thread;

use super::{Admission, Effects, EntryRef, Join, Recorded, Registry};
use crate::behaviour::{Behaviour, Concurrency};
use crate::cancel_reason::{CancelReason, REQUESTED};
use crate::control::{Control, ErasedControl};
use crate::ident::{Ident, Name};
use crate::introspection::InstanceState;

fn control() -> Arc<dyn ErasedControl> {
    Arc::new(Control::new(0_u32, false))
}

/// Two queue names whose queues live in different shards of `registry`.
fn names_in_two_shards(registry: &Registry) -> (Name, Name) {
    let first = Name::Static("q0");
    let other = ["q1", "q2", "q3", "q4", "q5", "q6", "q7", "q8"]
        .into_iter()
        .map(Name::Static)
        .find(|name| registry.shard_of(name) != registry.shard_of(&first));
    (
        first,
        other.expect("eight names cannot all hash to one of two shards"),
    )
}

/// Joins a new instance `id` to `queue`, as a child of `parent` if given.
fn join(
    registry: &Registry,
    id: u64,
    queue: &Name,
    concurrency: Concurrency,
    parent: Option<EntryRef>,
) -> (EntryRef, Ident, Admission) {
    let ident = Ident {
        name: Name::Static("p"),
        id,
    };
    let at = EntryRef {
        id,
        shard: registry.shard_of(queue),
    };
    let request = Join {
        at,
        ident: &ident,
        queue,
        keyed: false,
        concurrency,
        control: control(),
        parent,
        detached: false,
        unwaited: false,
        cancel_on_shutdown: true,
        existing: None,
        pipeline_key: 0,
    };
    let admission = registry.join(request, &mut Effects::default()).unwrap();
    (at, ident, admission)
}

fn state(registry: &Registry, id: u64) -> Option<InstanceState> {
    registry.instance(id).map(|info| info.state())
}

/// A child joins a root of another shard's queue while the root's tree is cancelled by
/// ident and a root of the child's queue ends (freeing the slot the child would wait
/// for): three threads, the tree lock and both shards.
#[test]
fn loom_model_a_child_joins_while_its_tree_is_cancelled_and_its_queue_frees_a_slot() {
    loom::model(|| {
        let registry = Arc::new(Registry::new(None, 2));
        let (a, b) = names_in_two_shards(&registry);
        let unrestricted = Concurrency::new(Behaviour::Unrestricted);
        let one_at_a_time = Concurrency::new(Behaviour::Enqueued);
        let (parent, parent_ident, _) = join(&registry, 1, &a, unrestricted, None);
        let (holder, _, _) = join(&registry, 2, &b, one_at_a_time, None);
        let (waiter, _, admission) = join(&registry, 3, &b, one_at_a_time, None);
        assert_eq!(admission, Admission::Wait);

        let child = {
            let registry = Arc::clone(&registry);
            let b = b.clone();
            thread::spawn(move || join(&registry, 4, &b, one_at_a_time, Some(parent)))
        };
        let ender = {
            let registry = Arc::clone(&registry);
            thread::spawn(move || {
                registry.finish(holder, Recorded::Finished, None, &mut Effects::default());
            })
        };
        assert!(registry.cancel_ident(
            &parent_ident,
            CancelReason::Requested,
            &mut Effects::default()
        ));
        let (child, _, child_admission) = child.join().unwrap();
        ender.join().unwrap();

        // The waiter was first in line: the freed slot is its own, whatever the order.
        assert_eq!(state(&registry, waiter.id), Some(InstanceState::Running));
        assert_eq!(state(&registry, parent.id), Some(InstanceState::Cancelling));
        assert_eq!(
            registry.parent_of(child).map(|ident| ident.id),
            Some(parent.id)
        );
        // The child waited (the slot was taken), and was cancelled with its tree if it
        // joined before the cancellation reached it.
        assert_eq!(child_admission, Admission::Wait);
        let child_state = state(&registry, child.id);
        assert!(matches!(
            child_state,
            Some(InstanceState::Waiting | InstanceState::Cancelling)
        ));

        // Everything ends: the registry empties, queue by queue and tree by tree.
        let mut fx = Effects::default();
        registry.finish(waiter, Recorded::Finished, None, &mut fx);
        if child_state == Some(InstanceState::Waiting) {
            registry.withdraw(child, &mut fx);
        }
        registry.finish(child, Recorded::Cancelled(REQUESTED), None, &mut fx);
        registry.finish(parent, Recorded::Cancelled(REQUESTED), None, &mut fx);
        assert_eq!(registry.counts(), (0, 2));
    });
}

/// Two wide operations (a child's join, a stop) and a root's join on one shard, with a
/// restartable queue that holds an `indexed` entry (so that root's join goes wide too):
/// no deadlock, and the stop's cancellations reach whatever had joined.
#[test]
fn loom_model_wide_operations_and_restartable_joins_do_not_deadlock() {
    loom::model(|| {
        let registry = Arc::new(Registry::new(None, 2));
        let (a, b) = names_in_two_shards(&registry);
        let unrestricted = Concurrency::new(Behaviour::Unrestricted);
        let restartable = Concurrency::new(Behaviour::Restartable);
        let (parent, _, _) = join(&registry, 1, &a, unrestricted, None);
        let (first_child, _, _) = join(&registry, 2, &b, restartable, Some(parent));

        let second_child = {
            let registry = Arc::clone(&registry);
            let b = b.clone();
            thread::spawn(move || join(&registry, 3, &b, restartable, Some(parent)))
        };
        let root = {
            let registry = Arc::clone(&registry);
            let b = b.clone();
            thread::spawn(move || join(&registry, 4, &b, restartable, None))
        };
        registry.stop(&mut Effects::default());
        let (second_child, _, _) = second_child.join().unwrap();
        let (root, _, _) = root.join().unwrap();

        // The restartable queue holds one slot: the first child was cancelled, by a
        // restart or the stop; so was the parent's whole tree (a restart climbs to it).
        assert_eq!(
            state(&registry, first_child.id),
            Some(InstanceState::Cancelling)
        );
        assert_eq!(state(&registry, parent.id), Some(InstanceState::Cancelling));
        let live_in_b = registry
            .active()
            .iter()
            .filter(|queue| queue.name() == b.as_str())
            .map(|queue| queue.instances().len())
            .sum::<usize>();
        assert!(live_in_b <= 1, "at most one live instance: {live_in_b}");

        let mut fx = Effects::default();
        for done in [root, second_child, first_child, parent] {
            registry.finish(done, Recorded::Cancelled(REQUESTED), None, &mut fx);
        }
        assert_eq!(registry.counts(), (0, 2));
    });
}
