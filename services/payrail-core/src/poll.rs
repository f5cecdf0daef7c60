//! The wait of a loop that polls a table for work: short while it finds work, doubling
//! on each empty round up to a ceiling, and short again once work or a wake-up comes.
//!
//! Polls are the idle appliance's main cost besides the broker (every relay and scheduler
//! queries each shard), and a busy loop finds work on every round, so backing off only
//! while idle costs latency only to the first piece of work after a quiet spell.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct IdlePoll {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl IdlePoll {
    /// `max` below `min` counts as `min` (a fixed interval).
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// How long to wait after an empty round; the round after waits twice as long.
    pub fn idle(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// Work was found, or something woke the loop: poll at the shortest interval again.
    pub fn busy(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::IdlePoll;
    use std::time::Duration;

    #[test]
    fn backs_off_while_idle_and_resets_on_work() {
        let ms = Duration::from_millis;
        let mut poll = IdlePoll::new(ms(50), ms(1000));
        let waits: Vec<u128> = (0..7).map(|_| poll.idle().as_millis()).collect();
        assert_eq!(waits, [50, 100, 200, 400, 800, 1000, 1000]);
        poll.busy();
        assert_eq!(poll.idle(), ms(50));
    }

    #[test]
    fn a_ceiling_below_the_floor_is_a_fixed_interval() {
        let ms = Duration::from_millis;
        let mut poll = IdlePoll::new(ms(100), ms(10));
        assert_eq!((poll.idle(), poll.idle()), (ms(100), ms(100)));
    }
}
