//! Time buckets in an app's timezone.
//!
//! Countly buckets every counter by the *local* wall clock of the app: year, month, day,
//! hour, and a week number that is `ceil(day_of_year / 7)` (not ISO: every year has weeks
//! 1..=53 and week 1 always starts on 1 January). Keys carry no zero padding.
//!
//! Besides the calendar parts, a [`Buckets`] carries a monotonic index per level (hours,
//! days, weeks, months, years since an epoch, all counted on the local wall clock). The
//! per-device activity windows in [`crate::device`] are indexed by them. Counting on the
//! wall clock means the repeated hour of a DST fall-back is one bucket, exactly as the
//! Countly key `D.H` is one bucket.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// The buckets one instant falls into, in one timezone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    pub year: i32,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    /// 0..=23
    pub hour: u32,
    /// Countly's week: 1..=53, `ceil(ordinal / 7)`.
    pub week: u32,
    /// Local wall-clock hours since 1970-01-01T00:00 local.
    pub hour_index: u32,
    /// Local days since 1970-01-01.
    pub day_index: u32,
    /// `year * 53 + week - 1`: contiguous because every year has exactly 53 Countly weeks.
    pub week_index: u32,
    /// `year * 12 + month - 1`.
    pub month_index: u32,
    /// The year itself.
    pub year_index: u32,
}

impl Buckets {
    /// Buckets of a UNIX time (seconds) in `tz`. Times before 1970 are clamped to 1970;
    /// callers reject those long before they get here.
    pub fn at(unix_secs: i64, tz: Tz) -> Buckets {
        let utc = DateTime::<Utc>::from_timestamp(unix_secs.max(0), 0).unwrap_or_default();
        Self::from_local(tz.from_utc_datetime(&utc.naive_utc()).naive_local())
    }

    fn from_local(local: NaiveDateTime) -> Buckets {
        let date = local.date();
        let week = date.ordinal().div_ceil(7);
        let local_secs = local.and_utc().timestamp().max(0);
        let year = date.year();
        let uyear = year.max(0) as u32;
        Buckets {
            year,
            month: date.month(),
            day: date.day(),
            hour: local.hour(),
            week,
            hour_index: (local_secs / 3600) as u32,
            day_index: (local_secs / 86_400) as u32,
            week_index: uyear * 53 + week - 1,
            month_index: uyear * 12 + date.month() - 1,
            year_index: uyear,
        }
    }
}

/// The UNIX time (seconds) at which a local calendar day starts in `tz`. On a day whose
/// midnight does not exist (some DST transitions) this is the first instant of the day.
pub fn local_day_start(date: NaiveDate, tz: Tz) -> i64 {
    let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    match tz.from_local_datetime(&midnight) {
        chrono::LocalResult::Single(t) => t.timestamp(),
        chrono::LocalResult::Ambiguous(first, _) => first.timestamp(),
        chrono::LocalResult::None => {
            // Midnight skipped: the day starts at the first existing minute after it.
            (1..=180)
                .find_map(|m| {
                    tz.from_local_datetime(&(midnight + chrono::Duration::minutes(m)))
                        .earliest()
                })
                .map(|t| t.timestamp())
                .unwrap_or_else(|| midnight.and_utc().timestamp())
        }
    }
}

/// The local calendar date of a UNIX time in `tz`.
pub fn local_date(unix_secs: i64, tz: Tz) -> NaiveDate {
    let utc = DateTime::<Utc>::from_timestamp(unix_secs, 0).unwrap_or_default();
    tz.from_utc_datetime(&utc.naive_utc()).date_naive()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countly_week_is_ceil_of_ordinal() {
        // 2024-10-22 is day 296 -> week 43 (the example in the protocol notes).
        let b = Buckets::at(1_729_598_400, chrono_tz::UTC); // 2024-10-22T12:00Z
        assert_eq!(
            (b.year, b.month, b.day, b.hour, b.week),
            (2024, 10, 22, 12, 43)
        );
        // 1 January is always week 1, 31 December always week 53.
        let jan1 = Buckets::at(1_704_067_200, chrono_tz::UTC);
        assert_eq!(jan1.week, 1);
        let dec31 = Buckets::at(1_735_603_200, chrono_tz::UTC);
        assert_eq!((dec31.month, dec31.day, dec31.week), (12, 31, 53));
        assert_eq!(jan1.week_index + 52, dec31.week_index);
    }

    #[test]
    fn buckets_follow_the_app_timezone() {
        // 2024-10-22T22:30Z is already the 23rd, 01:30, in Istanbul (UTC+3).
        let b = Buckets::at(1_729_636_200, chrono_tz::Europe::Istanbul);
        assert_eq!((b.day, b.hour), (23, 1));
    }

    #[test]
    fn dst_fall_back_repeats_one_local_hour() {
        // Europe/Berlin leaves DST on 2024-10-27 at 03:00 local -> 02:00 local.
        let tz = chrono_tz::Europe::Berlin;
        let first = Buckets::at(1_729_989_000, tz); // 00:30Z = 02:30 CEST
        let second = Buckets::at(1_729_992_600, tz); // 01:30Z = 02:30 CET
        assert_eq!((first.hour, second.hour), (2, 2));
        assert_eq!(first.hour_index, second.hour_index);
        // That day has 25 hours but one date.
        let date = NaiveDate::from_ymd_opt(2024, 10, 27).unwrap_or_default();
        let next = NaiveDate::from_ymd_opt(2024, 10, 28).unwrap_or_default();
        assert_eq!(
            local_day_start(next, tz) - local_day_start(date, tz),
            25 * 3600
        );
    }

    #[test]
    fn indices_are_contiguous_across_year_ends() {
        let tz = chrono_tz::UTC;
        let a = Buckets::at(1_735_689_599, tz); // 2024-12-31T23:59:59Z
        let b = Buckets::at(1_735_689_600, tz); // 2025-01-01T00:00:00Z
        assert_eq!(a.hour_index + 1, b.hour_index);
        assert_eq!(a.day_index + 1, b.day_index);
        assert_eq!(a.week_index + 1, b.week_index);
        assert_eq!(a.month_index + 1, b.month_index);
        assert_eq!(a.year_index + 1, b.year_index);
    }
}
