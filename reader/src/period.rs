//! Countly's `period` parameter: which local days an answer covers, in the app's timezone.
//!
//! | period | days |
//! |--------|------|
//! | `month` (default) | 1 January of this year to today (Countly's "this year, by month") |
//! | `day` | the 1st of this month to today |
//! | `hour` | today |
//! | `yesterday` | yesterday |
//! | `prevMonth` | the whole previous month |
//! | `Ndays` (e.g. `7days`, `30days`, `60days`) | the last N days, today included |
//! | `[from_ms, to_ms]` | the local days of those two instants, inclusive |
//!
//! As in Countly, a period selects whole months to load: the answer holds every day of
//! those months, the year and month uniques of the years they are in, and year and month
//! totals summed from the loaded days.

use chrono::{Datelike, Duration, NaiveDate};
use chrono_tz::Tz;
use tally_model::time::local_date;
use tally_service::ApiError;

/// Longest range an answer may cover.
pub const MAX_DAYS: i64 = 3660;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Range {
    /// The (year, month) pairs the range touches, in order.
    pub fn months(&self) -> Vec<(i32, u32)> {
        let mut out = Vec::new();
        let (mut y, mut m) = (self.from.year(), self.from.month());
        while (y, m) <= (self.to.year(), self.to.month()) {
            out.push((y, m));
            (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        }
        out
    }

    pub fn years(&self) -> Vec<i32> {
        (self.from.year()..=self.to.year()).collect()
    }

    pub fn contains(&self, d: NaiveDate) -> bool {
        self.from <= d && d <= self.to
    }
}

fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

/// Parses `period` relative to `now` (UNIX seconds) in `tz`.
pub fn parse(period: Option<&str>, now: i64, tz: Tz) -> Result<Range, ApiError> {
    let today = local_date(now, tz);
    let bad = || ApiError::invalid_param("period");
    let p = period
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .unwrap_or("month");
    let range = match p {
        "month" => Range {
            from: NaiveDate::from_ymd_opt(today.year(), 1, 1).unwrap_or(today),
            to: today,
        },
        "day" => Range {
            from: first_of_month(today),
            to: today,
        },
        "hour" => Range {
            from: today,
            to: today,
        },
        "yesterday" => {
            let y = today - Duration::days(1);
            Range { from: y, to: y }
        }
        "prevMonth" => {
            let last = first_of_month(today) - Duration::days(1);
            Range {
                from: first_of_month(last),
                to: last,
            }
        }
        p if p.ends_with("days") => {
            let n: i64 = p.trim_end_matches("days").parse().map_err(|_| bad())?;
            if !(1..=MAX_DAYS).contains(&n) {
                return Err(bad());
            }
            Range {
                from: today - Duration::days(n - 1),
                to: today,
            }
        }
        p if p.starts_with('[') => {
            let v: Vec<f64> = serde_json::from_str(p).map_err(|_| bad())?;
            let [from, to] = v[..] else { return Err(bad()) };
            if !(from.is_finite() && to.is_finite()) || from < 0.0 || to < from {
                return Err(bad());
            }
            let from = local_date((from / 1000.0) as i64, tz);
            let to = local_date((to / 1000.0) as i64, tz);
            Range { from, to }
        }
        _ => return Err(bad()),
    };
    if (range.to - range.from).num_days() > MAX_DAYS {
        return Err(bad());
    }
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_729_598_400; // 2024-10-22T12:00:00Z

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap_or_default()
    }

    #[test]
    fn named_periods() {
        let tz = chrono_tz::UTC;
        let r = |p| parse(Some(p), NOW, tz).ok();
        assert_eq!(
            r("month"),
            Some(Range {
                from: d(2024, 1, 1),
                to: d(2024, 10, 22)
            })
        );
        assert_eq!(parse(None, NOW, tz).ok(), r("month"));
        assert_eq!(
            r("day"),
            Some(Range {
                from: d(2024, 10, 1),
                to: d(2024, 10, 22)
            })
        );
        assert_eq!(
            r("hour"),
            Some(Range {
                from: d(2024, 10, 22),
                to: d(2024, 10, 22)
            })
        );
        assert_eq!(
            r("yesterday"),
            Some(Range {
                from: d(2024, 10, 21),
                to: d(2024, 10, 21)
            })
        );
        assert_eq!(
            r("prevMonth"),
            Some(Range {
                from: d(2024, 9, 1),
                to: d(2024, 9, 30)
            })
        );
        assert_eq!(
            r("7days"),
            Some(Range {
                from: d(2024, 10, 16),
                to: d(2024, 10, 22)
            })
        );
        assert_eq!(
            r("60days").map(|x| x.months()),
            Some(vec![(2024, 8), (2024, 9), (2024, 10)])
        );
        for bad in [
            "week",
            "0days",
            "-3days",
            "99999days",
            "[1,2,3]",
            "[5,1]",
            "abc",
        ] {
            assert!(parse(Some(bad), NOW, tz).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_are_local_days() {
        // 2024-10-22T22:30Z is the 23rd in Istanbul.
        let r = parse(
            Some("[1729636200000,1729636200000]"),
            NOW,
            chrono_tz::Europe::Istanbul,
        )
        .ok();
        assert_eq!(
            r,
            Some(Range {
                from: d(2024, 10, 23),
                to: d(2024, 10, 23)
            })
        );
        let r = parse(Some("30days"), 1_735_689_600, chrono_tz::UTC).ok(); // 2025-01-01
        assert_eq!(r.map(|x| x.years()), Some(vec![2024, 2025]));
    }
}
