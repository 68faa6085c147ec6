//! How long to wait: backoff before trying a target again, and the delay
//! before a hedge.

use std::time::Duration;

use switchyard_config::{HedgeConfig, HedgeDelay, RetryConfig};

use crate::{Health, Target};

/// Wait before trying a target again that already failed this request:
/// uniformly random in `[0, min(backoff_max, backoff_base * 2^n)]` with
/// `n = same_target_retries` (0 for the first retry). Full jitter spreads
/// the retries of many requests that failed together, so they do not hit
/// the recovering target in a wave.
pub fn backoff(retry: &RetryConfig, same_target_retries: u32) -> Duration {
    let factor = 1u32.checked_shl(same_target_retries).unwrap_or(u32::MAX);
    let cap = retry
        .backoff_base
        .saturating_mul(factor)
        .min(retry.backoff_max);
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

/// How long the first attempt on `first` may go without a first token before
/// a hedge starts: the fixed delay, or `first`'s observed p95 time to first
/// token, never below `min_delay` (which also stands in until measured).
pub fn hedge_delay(hedge: &HedgeConfig, first: &Target, health: &Health) -> Duration {
    match hedge.delay {
        HedgeDelay::Fixed(d) => d,
        HedgeDelay::P95 => health
            .p95_first_token(first)
            .map_or(hedge.min_delay, |p| p.max(hedge.min_delay)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(base_ms: u64, max_ms: u64) -> RetryConfig {
        RetryConfig {
            max_attempts: 4,
            backoff_base: Duration::from_millis(base_ms),
            backoff_max: Duration::from_millis(max_ms),
        }
    }

    #[test]
    fn backoff_stays_within_the_doubling_cap() {
        let r = retry(50, 2000);
        for (n, cap_ms) in [
            (0, 50),
            (1, 100),
            (2, 200),
            (5, 1600),
            (6, 2000),
            (40, 2000),
        ] {
            let cap = Duration::from_millis(cap_ms);
            let samples: Vec<Duration> = (0..2000).map(|_| backoff(&r, n)).collect();
            assert!(samples.iter().all(|d| *d <= cap), "n={n}");
            // Full jitter: the spread covers most of the range.
            let max = samples.iter().max().unwrap();
            let min = samples.iter().min().unwrap();
            assert!(*max > cap * 9 / 10, "n={n} max={max:?}");
            assert!(*min < cap / 10, "n={n} min={min:?}");
        }
    }

    #[test]
    fn backoff_of_zero_base_is_zero() {
        assert_eq!(backoff(&retry(0, 2000), 3), Duration::ZERO);
        assert_eq!(backoff(&retry(50, 0), 3), Duration::ZERO);
    }

    #[test]
    fn hedge_delay_fixed_or_p95_with_floor() {
        let health = Health::default();
        let t = Target::new("p", "m");
        let ms = Duration::from_millis;
        let fixed = HedgeConfig {
            delay: HedgeDelay::Fixed(ms(1500)),
            min_delay: ms(500),
            max_hedges: 1,
        };
        assert_eq!(hedge_delay(&fixed, &t, &health), ms(1500));
        let p95 = HedgeConfig {
            delay: HedgeDelay::P95,
            ..fixed
        };
        assert_eq!(hedge_delay(&p95, &t, &health), ms(500), "unmeasured");
        health.record_success(&t, ms(100), ms(100));
        assert_eq!(hedge_delay(&p95, &t, &health), ms(500), "floor");
        for _ in 0..10 {
            health.record_success(&t, ms(900), ms(900));
        }
        assert_eq!(hedge_delay(&p95, &t, &health), ms(900));
    }
}
