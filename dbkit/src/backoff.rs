//! Reconnect delays: exponential, capped, with "equal jitter" (between half and all of the
//! step) so that many clients cut off at once do not come back in step.

use rand::Rng;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff { min, max: max.max(min), step: min }
    }

    /// The next delay to wait; each call doubles the step up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let f: f64 = rand::thread_rng().gen_range(0.5..=1.0);
        let wait = self.step.mul_f64(f);
        self.step = (self.step * 2).min(self.max);
        wait
    }

    /// After a connection that worked: start again from the minimum.
    pub fn reset(&mut self) {
        self.step = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let steps = [100u64, 200, 400, 800, 800];
        for s in steps {
            let d = b.next_delay().as_millis() as u64;
            assert!(d >= s / 2 && d <= s, "{d} ms not within [{}, {s}]", s / 2);
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
