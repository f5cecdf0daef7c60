//! may's scheduler, set the same way by every service that serves HTTP on it.

use std::time::Duration;

/// Finished coroutines whose stacks may keeps for reuse. may's default is 1,000: after a
/// burst of connections (the gateway opens up to `in_flight_max` to each ingest), every
/// stack page a connection touched stays resident; ingest held 1,000 of them, 15 MB, after
/// `cargo xtask bench` (`/proc/<pid>/smaps`). A new stack beyond these costs one `mmap`
/// per connection, not per request.
pub const COROUTINE_POOL: usize = 64;

/// How long an idle may event loop sleeps when it has one worker. may wakes every 10 ms
/// by default so that an idle worker steals queued coroutines from a busy one; with one
/// worker there is nobody to steal from, and everything that needs the loop wakes it (an
/// I/O event, a coroutine scheduled from another thread, a new earliest I/O timeout), so
/// the 100 wake-ups a second only cost CPU (the idle pg-mock: 0.4 % of a core before,
/// 0.02 % after).
const SINGLE_WORKER_IDLE_WAIT: Duration = Duration::from_secs(1);

/// Configures may before its first coroutine: `workers` threads, stacks of `stack_words`
/// words (8 bytes; stacks do not grow), [`COROUTINE_POOL`] cached coroutines, and for a
/// single worker the longer idle sleep.
pub fn configure_may(workers: usize, stack_words: usize) {
    let config = may::config();
    config
        .set_workers(workers)
        .set_stack_size(stack_words)
        .set_pool_capacity(COROUTINE_POOL);
    if workers == 1 {
        config.set_timeout_ns(SINGLE_WORKER_IDLE_WAIT.as_nanos() as u64);
    }
}
