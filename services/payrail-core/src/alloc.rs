//! Heap allocations counted, for the "allocations per request" figure of
//! `cargo xtask bench`: a global allocator that wraps another and counts every `alloc`,
//! `alloc_zeroed` and `realloc`, exported as `payrail_heap_allocations_total`, and the
//! bytes the program holds (requested sizes allocated minus freed), exported as
//! `payrail_heap_live_bytes`. Live bytes against RSS tell growth the program holds (a
//! cache, a leak) from memory the allocator keeps after it was freed.
//!
//! Each thread counts in one of [`SLOTS`] cache-line-sized counters of its own (picked
//! once per thread), so counting is an uncontended atomic add, not a shared cache line
//! bouncing between the may and tokio threads. A block freed on another thread than the
//! one that allocated it moves bytes between slots; only the sum means anything. The
//! thread-local needs no destructor and is initialised by a constant, so it never
//! allocates itself.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

const SLOTS: usize = 16;

#[repr(align(128))]
struct Slot {
    allocations: AtomicU64,
    bytes: AtomicI64,
}

static COUNTS: [Slot; SLOTS] = [const {
    Slot {
        allocations: AtomicU64::new(0),
        bytes: AtomicI64::new(0),
    }
}; SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MY_SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

#[inline]
fn my_slot() -> &'static Slot {
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
    &COUNTS[slot]
}

/// One allocation that changes the bytes held by `bytes`.
#[inline]
fn count(bytes: i64) {
    let slot = my_slot();
    slot.allocations.fetch_add(1, Ordering::Relaxed);
    slot.bytes.fetch_add(bytes, Ordering::Relaxed);
}

/// Allocations counted so far in this process (0 unless [`Counting`] is the global
/// allocator).
pub fn allocations() -> u64 {
    COUNTS
        .iter()
        .map(|s| s.allocations.load(Ordering::Relaxed))
        .sum()
}

/// Bytes allocated and not freed yet, as requested (not the allocator's rounding); 0
/// unless [`Counting`] is the global allocator.
pub fn live_bytes() -> i64 {
    COUNTS.iter().map(|s| s.bytes.load(Ordering::Relaxed)).sum()
}

/// `#[global_allocator] static GLOBAL: Counting<MiMalloc> = Counting(MiMalloc);`
pub struct Counting<A>(pub A);

// SAFETY: every call is forwarded unchanged to the wrapped allocator; counting touches
// only atomics and a destructor-free thread-local, and never allocates.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as i64);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { self.0.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as i64);
        // SAFETY: as above.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as i64 - layout.size() as i64);
        // SAFETY: as above.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        my_slot()
            .bytes
            .fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { self.0.dealloc(ptr, layout) }
    }
}

const METRIC: &str = "heap_allocations_total";
const HELP: &str = "Heap allocations (alloc, alloc_zeroed, realloc) since the process started";
const LIVE_METRIC: &str = "heap_live_bytes";
const LIVE_HELP: &str =
    "Heap bytes allocated and not freed yet, as requested (RSS minus this is allocator slack)";

/// `payrail_heap_allocations_total` and `payrail_heap_live_bytes`, read from
/// [`allocations`] and [`live_bytes`] at every scrape.
#[derive(Clone)]
pub struct AllocationsCollector {
    descs: [prometheus::core::Desc; 2],
}

impl AllocationsCollector {
    pub fn new() -> Result<Self, prometheus::Error> {
        let desc = |name: &str, help: &str| {
            prometheus::core::Desc::new(name.into(), help.into(), Vec::new(), Default::default())
        };
        Ok(Self {
            descs: [desc(METRIC, HELP)?, desc(LIVE_METRIC, LIVE_HELP)?],
        })
    }
}

impl prometheus::core::Collector for AllocationsCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families = Vec::with_capacity(2);
        if let Ok(counter) = prometheus::IntCounter::with_opts(prometheus::Opts::new(METRIC, HELP))
        {
            counter.inc_by(allocations());
            families.extend(prometheus::core::Collector::collect(&counter));
        }
        if let Ok(gauge) =
            prometheus::IntGauge::with_opts(prometheus::Opts::new(LIVE_METRIC, LIVE_HELP))
        {
            gauge.set(live_bytes());
            families.extend(prometheus::core::Collector::collect(&gauge));
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counters are process-wide: tests that read them run one at a time.
    static COUNTERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn counts_only_through_the_wrapper() {
        // The test binary's allocator is the system's, not Counting: nothing is counted
        // unless the wrapper is called.
        let _serial = COUNTERS.lock().unwrap_or_else(|e| e.into_inner());
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

    #[test]
    fn live_bytes_follow_allocations_and_frees() {
        let _serial = COUNTERS.lock().unwrap_or_else(|e| e.into_inner());
        let wrapper = Counting(std::alloc::System);
        let small = Layout::from_size_align(1000, 8).unwrap();
        let large = Layout::from_size_align(5000, 8).unwrap();
        let before = live_bytes();
        // SAFETY: valid layouts; each block is freed with the layout it has.
        unsafe {
            let block = wrapper.alloc(small);
            assert_eq!(live_bytes() - before, 1000);
            let block = wrapper.realloc(block, small, 5000);
            assert_eq!(live_bytes() - before, 5000);
            wrapper.dealloc(block, large);
        }
        assert_eq!(live_bytes(), before);
    }
}
