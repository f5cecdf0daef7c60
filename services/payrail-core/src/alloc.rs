//! Heap allocations counted, for the "allocations per request" figure of
//! `cargo xtask bench`: a global allocator that wraps another and counts every `alloc`,
//! `alloc_zeroed` and `realloc`, exported as `payrail_heap_allocations_total`.
//!
//! Each thread counts in one of [`SLOTS`] cache-line-sized counters of its own (picked
//! once per thread), so counting is an uncontended atomic add, not a shared cache line
//! bouncing between the may and tokio threads. The thread-local needs no destructor and
//! is initialised by a constant, so it never allocates itself.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const SLOTS: usize = 16;

#[repr(align(128))]
struct Slot(AtomicU64);

static COUNTS: [Slot; SLOTS] = [const { Slot(AtomicU64::new(0)) }; SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MY_SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

#[inline]
fn count() {
    let slot = MY_SLOT
        .try_with(|mine| {
            let mut slot = mine.get();
            if slot == usize::MAX {
                slot = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS;
                mine.set(slot);
            }
            slot
        })
        .unwrap_or(0);
    COUNTS[slot].0.fetch_add(1, Ordering::Relaxed);
}

/// Allocations counted so far in this process (0 unless [`Counting`] is the global
/// allocator).
pub fn allocations() -> u64 {
    COUNTS.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
}

/// `#[global_allocator] static GLOBAL: Counting<MiMalloc> = Counting(MiMalloc);`
pub struct Counting<A>(pub A);

// SAFETY: every call is forwarded unchanged to the wrapped allocator; counting touches
// only atomics and a destructor-free thread-local, and never allocates.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { self.0.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { self.0.dealloc(ptr, layout) }
    }
}

const METRIC: &str = "heap_allocations_total";
const HELP: &str = "Heap allocations (alloc, alloc_zeroed, realloc) since the process started";

/// `payrail_heap_allocations_total`, read from [`allocations`] at every scrape.
#[derive(Clone)]
pub struct AllocationsCollector {
    desc: prometheus::core::Desc,
}

impl AllocationsCollector {
    pub fn new() -> Result<Self, prometheus::Error> {
        Ok(Self {
            desc: prometheus::core::Desc::new(
                METRIC.into(),
                HELP.into(),
                Vec::new(),
                Default::default(),
            )?,
        })
    }
}

impl prometheus::core::Collector for AllocationsCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let counter = prometheus::IntCounter::with_opts(prometheus::Opts::new(METRIC, HELP));
        match counter {
            Ok(counter) => {
                counter.inc_by(allocations());
                prometheus::core::Collector::collect(&counter)
            }
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_through_the_wrapper() {
        // The test binary's allocator is the system's, not Counting: nothing is counted
        // unless the wrapper is called.
        let wrapper = Counting(std::alloc::System);
        let before = allocations();
        let layout = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: a valid layout; the block is freed with the same layout.
        unsafe {
            let block = wrapper.alloc(layout);
            assert!(!block.is_null());
            let block = wrapper.realloc(block, layout, 128);
            wrapper.dealloc(block, Layout::from_size_align(128, 8).unwrap());
        }
        assert_eq!(allocations() - before, 2);
    }
}
