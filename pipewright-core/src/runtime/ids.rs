//! Instance ids: unique within their runtime, handed out from per-thread blocks, so that
//! invocations on independent queues from different threads write no memory they share
//! (a thread takes a block of [`BLOCK`] ids from the runtime's counter once per
//! [`BLOCK`] invocations). The ids one thread takes increase; the ids of different
//! threads interleave, so an id orders one thread's invocations, not the runtime's.
//!
//! A thread keeps a block for each of the last [`CACHED`] runtimes it invoked, by the
//! runtime's serial number (never reused, unlike its address).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Ids a thread takes from a runtime's counter at a time.
const BLOCK: u64 = 1024;

/// Runtimes a thread keeps a block for.
const CACHED: usize = 4;

/// Serial numbers of runtimes (0: no runtime).
static RUNTIMES: AtomicU64 = AtomicU64::new(1);

/// A thread's block of one runtime's ids: `next..end` are its own.
#[derive(Clone, Copy)]
struct Block {
    runtime: u64,
    next: u64,
    end: u64,
}

impl Block {
    const NONE: Block = Block {
        runtime: 0,
        next: 0,
        end: 0,
    };
}

thread_local! {
    static BLOCKS: [Cell<Block>; CACHED] = const { [const { Cell::new(Block::NONE) }; CACHED] };
    /// The place the next runtime this thread has no block for takes (round robin).
    static EVICT: Cell<usize> = const { Cell::new(0) };
}

/// A runtime's instance ids.
pub(crate) struct Ids {
    runtime: u64,
    counter: AtomicU64,
}

impl Ids {
    pub(crate) fn new() -> Self {
        Ids {
            runtime: RUNTIMES.fetch_add(1, Ordering::Relaxed),
            counter: AtomicU64::new(1),
        }
    }

    /// The runtime's serial number: never 0, never reused in the process.
    pub(crate) fn runtime(&self) -> u64 {
        self.runtime
    }

    /// A fresh id, never handed out before by this runtime.
    pub(crate) fn next(&self) -> u64 {
        BLOCKS
            .try_with(|blocks| self.next_from(blocks))
            // The thread is being torn down: straight from the counter.
            .unwrap_or_else(|_| self.counter.fetch_add(1, Ordering::Relaxed))
    }

    fn next_from(&self, blocks: &[Cell<Block>; CACHED]) -> u64 {
        let place = match blocks
            .iter()
            .find(|cell| cell.get().runtime == self.runtime)
        {
            Some(place) => place,
            None => {
                let evict = EVICT.with(|evict| {
                    let place = evict.get();
                    evict.set((place + 1) % CACHED);
                    place
                });
                let place = &blocks[evict];
                place.set(Block {
                    runtime: self.runtime,
                    ..Block::NONE
                });
                place
            }
        };
        let mut block = place.get();
        if block.next == block.end {
            block.next = self.counter.fetch_add(BLOCK, Ordering::Relaxed);
            block.end = block.next + BLOCK;
        }
        let id = block.next;
        block.next += 1;
        place.set(block);
        id
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use super::{Ids, BLOCK, CACHED};

    #[test]
    fn one_thread_counts_up_from_one() {
        let ids = Ids::new();
        let taken: Vec<u64> = (0..5).map(|_| ids.next()).collect();
        assert_eq!(taken, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn ids_stay_unique_across_threads_blocks_and_more_runtimes_than_a_thread_keeps() {
        let runtimes: Vec<Arc<Ids>> = (0..CACHED + 2).map(|_| Arc::new(Ids::new())).collect();
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let runtimes = runtimes.clone();
                std::thread::spawn(move || {
                    let mut taken = vec![Vec::new(); runtimes.len()];
                    // Round robin over more runtimes than a thread keeps blocks for, past
                    // a block's end.
                    for _ in 0..2 * BLOCK {
                        for (ids, taken) in runtimes.iter().zip(&mut taken) {
                            taken.push(ids.next());
                        }
                    }
                    taken
                })
            })
            .collect();
        let mut seen = vec![HashSet::new(); runtimes.len()];
        for thread in threads {
            for (runtime, taken) in thread.join().unwrap().into_iter().enumerate() {
                // Each thread's ids of a runtime increase.
                assert!(taken.windows(2).all(|pair| pair[0] < pair[1]));
                for id in taken {
                    assert!(id > 0);
                    assert!(seen[runtime].insert(id), "id {id} handed out twice");
                }
            }
        }
    }
}
