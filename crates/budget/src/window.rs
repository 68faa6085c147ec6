//! Calendar windows of budgets, aligned in the budgets' time zone.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Serialize};

/// The calendar period a budget's spend is counted over. Every window starts
/// at local midnight in the budgets' time zone (or the first instant of the
/// day when midnight does not exist there, e.g. a DST gap at 00:00), so a
/// "daily" window is 23 or 25 hours long on DST change days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    Daily,
    /// ISO weeks: Monday 00:00 to the next Monday 00:00.
    Weekly,
    Monthly,
}

impl Window {
    /// `[start, end)` of the window that contains `at`.
    ///
    /// Only fails within a window of jiff's supported range (years -9999 and
    /// 9999); then the window is clamped to that range, so a timestamp from a
    /// broken clock still lands in some window.
    pub fn bounds(self, at: Timestamp, tz: &TimeZone) -> (Timestamp, Timestamp) {
        match self.try_bounds(at, tz) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(%at, error = %e, "budget window outside the supported time range");
                (Timestamp::MIN, Timestamp::MAX)
            }
        }
    }

    fn try_bounds(
        self,
        at: Timestamp,
        tz: &TimeZone,
    ) -> Result<(Timestamp, Timestamp), jiff::Error> {
        let day = at.to_zoned_datetime(tz.clone()).date();
        let (first, next) = match self {
            Window::Daily => (day, day.tomorrow()?),
            Window::Weekly => {
                let monday =
                    day.checked_sub(i64::from(day.weekday().to_monday_zero_offset()).days())?;
                (monday, monday.checked_add(7.days())?)
            }
            Window::Monthly => {
                let first = day.first_of_month();
                (first, first.checked_add(1.month())?)
            }
        };
        Ok((local_midnight(first, tz)?, local_midnight(next, tz)?))
    }
}

/// The first instant of `day` in `tz`. Civil midnight with the "compatible"
/// disambiguation: in a gap it moves forward to the end of the gap, in a fold
/// it takes the earlier instant — both are the true start of the day.
fn local_midnight(day: Date, tz: &TimeZone) -> Result<Timestamp, jiff::Error> {
    Ok(day.to_zoned_datetime(tz.clone())?.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn check(w: Window, tz: &TimeZone, at: &str, start: &str, end: &str) {
        let (s, e) = w.bounds(ts(at), tz);
        assert_eq!((s, e), (ts(start), ts(end)), "{w:?} at {at}");
    }

    #[test]
    fn utc_windows() {
        let utc = TimeZone::UTC;
        check(
            Window::Daily,
            &utc,
            "2025-06-15T13:45:00Z",
            "2025-06-15T00:00:00Z",
            "2025-06-16T00:00:00Z",
        );
        // Exactly at the boundary belongs to the new window.
        check(
            Window::Daily,
            &utc,
            "2025-06-16T00:00:00Z",
            "2025-06-16T00:00:00Z",
            "2025-06-17T00:00:00Z",
        );
        // 2025-06-15 is a Sunday: its ISO week began Monday the 9th.
        check(
            Window::Weekly,
            &utc,
            "2025-06-15T23:59:59Z",
            "2025-06-09T00:00:00Z",
            "2025-06-16T00:00:00Z",
        );
        check(
            Window::Weekly,
            &utc,
            "2025-06-16T00:00:00Z",
            "2025-06-16T00:00:00Z",
            "2025-06-23T00:00:00Z",
        );
        // A week across a year end.
        check(
            Window::Weekly,
            &utc,
            "2026-01-01T12:00:00Z",
            "2025-12-29T00:00:00Z",
            "2026-01-05T00:00:00Z",
        );
        check(
            Window::Monthly,
            &utc,
            "2025-06-15T13:45:00Z",
            "2025-06-01T00:00:00Z",
            "2025-07-01T00:00:00Z",
        );
        check(
            Window::Monthly,
            &utc,
            "2025-12-31T23:59:59Z",
            "2025-12-01T00:00:00Z",
            "2026-01-01T00:00:00Z",
        );
    }

    #[test]
    fn month_ends_and_leap_years() {
        let utc = TimeZone::UTC;
        // Jan 31 + "one month" must not become Feb 28 or Mar 3: the window
        // is the whole of January, then the whole of February.
        check(
            Window::Monthly,
            &utc,
            "2025-01-31T18:00:00Z",
            "2025-01-01T00:00:00Z",
            "2025-02-01T00:00:00Z",
        );
        check(
            Window::Monthly,
            &utc,
            "2025-02-28T23:00:00Z",
            "2025-02-01T00:00:00Z",
            "2025-03-01T00:00:00Z",
        );
        check(
            Window::Monthly,
            &utc,
            "2024-02-29T12:00:00Z",
            "2024-02-01T00:00:00Z",
            "2024-03-01T00:00:00Z",
        );
        check(
            Window::Daily,
            &utc,
            "2024-02-29T12:00:00Z",
            "2024-02-29T00:00:00Z",
            "2024-03-01T00:00:00Z",
        );
        check(
            Window::Daily,
            &utc,
            "2024-02-28T12:00:00Z",
            "2024-02-28T00:00:00Z",
            "2024-02-29T00:00:00Z",
        );
    }

    #[test]
    fn new_york_across_dst() {
        let ny = TimeZone::get("America/New_York").unwrap();
        // Spring forward, Sunday 2025-03-09 02:00 EST -> 03:00 EDT: a
        // 23-hour day, starting at midnight EST (-05) and ending at
        // midnight EDT (-04).
        check(
            Window::Daily,
            &ny,
            "2025-03-09T12:00:00-04:00",
            "2025-03-09T00:00:00-05:00",
            "2025-03-10T00:00:00-04:00",
        );
        let (s, e) = Window::Daily.bounds(ts("2025-03-09T12:00:00-04:00"), &ny);
        assert_eq!(e.duration_since(s).as_hours(), 23);
        // Fall back, Sunday 2025-11-02: a 25-hour day.
        let (s, e) = Window::Daily.bounds(ts("2025-11-02T01:30:00-05:00"), &ny);
        assert_eq!(
            (s, e),
            (
                ts("2025-11-02T00:00:00-04:00"),
                ts("2025-11-03T00:00:00-05:00")
            )
        );
        assert_eq!(e.duration_since(s).as_hours(), 25);
        // Late evening local time is already the next day in UTC: it still
        // counts in the local day.
        check(
            Window::Daily,
            &ny,
            "2025-03-10T03:30:00Z",
            "2025-03-09T00:00:00-05:00",
            "2025-03-10T00:00:00-04:00",
        );
        // The ISO week containing the spring change is 167 hours long.
        check(
            Window::Weekly,
            &ny,
            "2025-03-09T12:00:00-04:00",
            "2025-03-03T00:00:00-05:00",
            "2025-03-10T00:00:00-04:00",
        );
        // March starts in EST and ends in EDT.
        check(
            Window::Monthly,
            &ny,
            "2025-03-31T23:00:00-04:00",
            "2025-03-01T00:00:00-05:00",
            "2025-04-01T00:00:00-04:00",
        );
        // Just before local midnight on Jan 31 is still January, though UTC
        // already says February.
        check(
            Window::Monthly,
            &ny,
            "2025-02-01T04:30:00Z",
            "2025-01-01T00:00:00-05:00",
            "2025-02-01T00:00:00-05:00",
        );
    }

    #[test]
    fn day_starting_in_a_dst_gap() {
        // Sao Paulo skipped 00:00-01:00 on 2018-11-04: that day began at 01:00.
        let sp = TimeZone::get("America/Sao_Paulo").unwrap();
        check(
            Window::Daily,
            &sp,
            "2018-11-04T12:00:00-02:00",
            "2018-11-04T01:00:00-02:00",
            "2018-11-05T00:00:00-02:00",
        );
        check(
            Window::Daily,
            &sp,
            "2018-11-03T23:59:00-03:00",
            "2018-11-03T00:00:00-03:00",
            "2018-11-04T01:00:00-02:00",
        );
    }
}
