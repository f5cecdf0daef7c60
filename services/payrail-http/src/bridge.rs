//! The bridge from may coroutines to tokio.
//!
//! The async clients (mysql_async, redis, hyper) run on a tokio runtime with its own
//! threads. A coroutine hands a future to that runtime through an explicit
//! [`tokio::runtime::Handle`] (never tokio's thread-local context, which may's coroutines
//! must not touch) and parks on a may channel: the coroutine sleeps, its worker thread
//! keeps serving other connections. One hop there and one back per request: handlers send
//! the whole request's I/O as one future rather than one hop per query.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    /// Too many calls in flight; the caller should answer 503.
    #[error("too many requests in flight")]
    Overloaded,
    /// No answer within the bridge timeout; the work may still complete.
    #[error("timed out waiting for the async runtime")]
    Timeout,
    /// The runtime dropped the task (shutting down).
    #[error("async runtime is gone")]
    Gone,
}

pub struct Bridge {
    handle: tokio::runtime::Handle,
    /// Calls in flight now. Bounded so that a slow database turns into fast 503s instead
    /// of an unbounded pile of parked coroutines and queued futures.
    in_flight: AtomicUsize,
    in_flight_max: usize,
    /// How long a coroutine waits for its future. A little above the longest legitimate
    /// request (PG timeout plus a commit), so a stuck dependency cannot park coroutines forever.
    timeout: Duration,
    in_flight_gauge: prometheus::IntGauge,
}

impl Bridge {
    pub fn new(
        handle: tokio::runtime::Handle,
        in_flight_max: usize,
        timeout: Duration,
        in_flight_gauge: prometheus::IntGauge,
    ) -> Self {
        Self {
            handle,
            in_flight: AtomicUsize::new(0),
            in_flight_max,
            timeout,
            in_flight_gauge,
        }
    }

    /// Runs `future` on tokio and waits for its output without blocking the thread.
    pub fn call<F, T>(&self, future: F) -> Result<T, BridgeError>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.in_flight_max {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(BridgeError::Overloaded);
        }
        self.in_flight_gauge.inc();
        let (sender, receiver) = may::sync::mpsc::channel();
        self.handle.spawn(async move {
            let output = future.await;
            // The receiver is gone when the coroutine timed out; nothing to do then.
            let _ = sender.send(output);
        });
        let result = receiver
            .recv_timeout(self.timeout)
            .map_err(|error| match error {
                std::sync::mpsc::RecvTimeoutError::Timeout => BridgeError::Timeout,
                std::sync::mpsc::RecvTimeoutError::Disconnected => BridgeError::Gone,
            });
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.in_flight_gauge.dec();
        result
    }
}
