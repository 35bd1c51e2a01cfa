//! Countly's `period` parameter: which local days an answer covers, in the app's
//! timezone, and the period of the same length just before it, which every read loads
//! too (Countly's `getPeriodObject`), so a dashboard computes "change against the
//! previous period" from one answer.
//!
//! | period | days | previous period |
//! |--------|------|-----------------|
//! | `30days` (the default, and what an unknown period reads as) | the last 30 days, today included | the 30 days before |
//! | `Ndays` | the last N days | the N days before |
//! | `Nweeks` | the last 7×N days (Countly's server: rolling days, not calendar weeks) | the 7×N days before |
//! | `Nmonths` | the last 30×N days (as Countly's server) | the 30×N days before |
//! | `Nyears` | 1 January N−1 years ago to today | the same days a year earlier |
//! | `Nhours` | the days of the last N hours | as many days before |
//! | `month` | 1 January to today (this year, by month) | the same days last year |
//! | `day` | the 1st of this month to today | the same days last month |
//! | `hour` | today | yesterday |
//! | `yesterday` | yesterday | the day before |
//! | `prevMonth` | the whole previous month | the same days a month earlier |
//! | `[from, to]` | the days of those two instants (10 digits: seconds, else milliseconds; or `DD-MM-YYYY[ HH:mm:ss]`) | as many days before |
//! | `{"since": t}` | from that instant to today | as many days before |
//! | `{"period": p, "exclude_current_day": true}` | `p`, ending yesterday at the latest | as many days before |
//! | `DD-MM-YYYY` | that day | the day before |
//!
//! As in Countly, a period selects whole months to load: the answer holds every day of
//! the months of both periods, the uniques of their years, and year and month totals
//! summed from the loaded days.

use chrono::{Datelike, Duration, Months, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use serde_json::Value;
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

    /// Days in the range.
    pub fn days(&self) -> i64 {
        (self.to - self.from).num_days() + 1
    }
}

/// Which kind of period it is: Countly's period object answers some fields by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `hour`: today, by hour.
    Today,
    Yesterday,
    /// One day given as a range or a date.
    OneDay,
    /// `day`: this month, by day.
    ThisMonth,
    PrevMonth,
    /// `month`: this year, by month.
    ThisYear,
    /// Countly's "special" periods: a number of days, a range.
    Days,
}

/// How far back the previous period is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cycle {
    Days(i64),
    Months(u32),
}

impl Cycle {
    fn back(self, d: NaiveDate) -> NaiveDate {
        match self {
            Cycle::Days(n) => d - Duration::days(n),
            // Clamped to the month's end, as moment does (31 March - 1 month = 29 Feb).
            Cycle::Months(n) => d.checked_sub_months(Months::new(n)).unwrap_or(d),
        }
    }
}

/// A parsed period: its days, the previous period's, and its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub range: Range,
    pub previous: Range,
    pub kind: Kind,
    cycle: Cycle,
}

impl Period {
    fn new(range: Range, kind: Kind, cycle: Cycle) -> Period {
        Period {
            range,
            previous: Range {
                from: cycle.back(range.from),
                to: cycle.back(range.to),
            },
            kind,
            cycle,
        }
    }

    /// The day of the previous period that `d` of this one compares with (Countly's
    /// `previousPeriodArr`: a month back clamps, so two days may share one).
    pub fn before(&self, d: NaiveDate) -> NaiveDate {
        self.cycle.back(d)
    }

    fn days(from: NaiveDate, to: NaiveDate) -> Period {
        let range = Range { from, to };
        let kind = if from == to { Kind::OneDay } else { Kind::Days };
        Period::new(range, kind, Cycle::Days(range.days()))
    }

    /// Every month either period touches, in order, each once.
    pub fn months(&self) -> Vec<(i32, u32)> {
        let mut all = self.range.months();
        all.extend(self.previous.months());
        all.sort_unstable();
        all.dedup();
        all
    }

    /// Every year either period touches.
    pub fn years(&self) -> Vec<i32> {
        let mut all = self.range.years();
        all.extend(self.previous.years());
        all.sort_unstable();
        all.dedup();
        all
    }
}

fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

/// A number of something: `7days` -> 7 for `days`.
fn count_of(p: &str, unit: &str) -> Option<i64> {
    p.strip_suffix(unit)
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
}

/// One end of a range: 10 digits are seconds, other numbers milliseconds (as Countly
/// tells them apart), text `DD-MM-YYYY` or `DD-MM-YYYY HH:mm:ss` a local time.
fn instant(v: &Value, tz: Tz) -> Option<(f64, NaiveDate)> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    if let Ok(n) = text.parse::<f64>() {
        if !n.is_finite() || n < 0.0 {
            return None;
        }
        let secs = if text.len() == 10 { n } else { n / 1000.0 };
        return Some((secs, local_date(secs as i64, tz)));
    }
    date_text(&text, tz).map(|d| (f64::from(d.num_days_from_ce()) * 86400.0, d))
}

/// `DD-MM-YYYY` or `DD-MM-YYYY HH:mm:ss`, local to the app.
fn date_text(text: &str, tz: Tz) -> Option<NaiveDate> {
    if let Ok(t) = NaiveDateTime::parse_from_str(text, "%d-%m-%Y %H:%M:%S") {
        // A wall-clock time the zone skips is read as the first valid one.
        return tz
            .from_local_datetime(&t)
            .earliest()
            .map(|t| t.date_naive())
            .or(Some(t.date()));
    }
    NaiveDate::parse_from_str(text, "%d-%m-%Y").ok()
}

/// Parses `period` relative to `now` (UNIX seconds) in `tz`. A period Tally cannot read
/// answers as `30days`, as Countly does; only a readable one longer than [`MAX_DAYS`]
/// is refused.
pub fn parse(period: Option<&str>, now: i64, tz: Tz) -> Result<Period, ApiError> {
    let today = local_date(now, tz);
    let p = period.map(str::trim).filter(|p| !p.is_empty());
    let period = match p {
        Some(p) => named(p, now, today, tz).unwrap_or_else(|| last_days(today, 30)),
        None => last_days(today, 30),
    };
    if period.range.days() > MAX_DAYS {
        return Err(ApiError::bad(format!(
            "Invalid parameter \"period\": longer than {MAX_DAYS} days"
        )));
    }
    Ok(period)
}

fn last_days(today: NaiveDate, n: i64) -> Period {
    let n = if n < 1 { 30 } else { n };
    let from = today - Duration::days(n.min(MAX_DAYS + 1) - 1);
    Period::new(Range { from, to: today }, Kind::Days, Cycle::Days(n))
}

fn named(p: &str, now: i64, today: NaiveDate, tz: Tz) -> Option<Period> {
    Some(match p {
        "month" => Period::new(
            Range {
                from: NaiveDate::from_ymd_opt(today.year(), 1, 1)?,
                to: today,
            },
            Kind::ThisYear,
            Cycle::Months(12),
        ),
        "day" => Period::new(
            Range {
                from: first_of_month(today),
                to: today,
            },
            Kind::ThisMonth,
            Cycle::Months(1),
        ),
        "hour" => Period::new(
            Range {
                from: today,
                to: today,
            },
            Kind::Today,
            Cycle::Days(1),
        ),
        "yesterday" => {
            let y = today - Duration::days(1);
            Period::new(Range { from: y, to: y }, Kind::Yesterday, Cycle::Days(1))
        }
        "prevMonth" => {
            let last = first_of_month(today) - Duration::days(1);
            Period::new(
                Range {
                    from: first_of_month(last),
                    to: last,
                },
                Kind::PrevMonth,
                Cycle::Months(1),
            )
        }
        p if p.starts_with('[') || p.starts_with('{') => {
            let v: Value = serde_json::from_str(p).ok()?;
            structured(&v, now, today, tz)?
        }
        p => {
            if let Some(n) = count_of(p, "days") {
                last_days(today, n)
            } else if let Some(n) = count_of(p, "weeks") {
                last_days(today, n.saturating_mul(7))
            } else if let Some(n) = count_of(p, "months") {
                last_days(today, n.saturating_mul(30))
            } else if let Some(n) = count_of(p, "years").filter(|n| *n >= 1) {
                let year = today.year().checked_sub(i32::try_from(n - 1).ok()?)?;
                let from = NaiveDate::from_ymd_opt(year, 1, 1)?;
                Period::new(Range { from, to: today }, Kind::Days, Cycle::Months(12))
            } else if let Some(n) = count_of(p, "hours").filter(|n| *n >= 1) {
                let first_hour = now - (now.rem_euclid(3600)) - (n.min(24 * MAX_DAYS) - 1) * 3600;
                Period::days(local_date(first_hour, tz), today)
            } else {
                let day = date_text(p, tz)?;
                Period::days(day, day)
            }
        }
    })
}

fn structured(v: &Value, now: i64, today: NaiveDate, tz: Tz) -> Option<Period> {
    match v {
        Value::Array(ends) => {
            let [from, to] = ends.as_slice() else {
                return None;
            };
            let ((t0, from), (t1, to)) = (instant(from, tz)?, instant(to, tz)?);
            (t0 <= t1).then(|| Period::days(from, to))
        }
        Value::Object(o) => {
            if let Some(since) = o.get("since") {
                let from = instant(since, tz)?.1.min(today);
                return Some(Period::days(from, today));
            }
            let inner = match o.get("period")? {
                Value::String(s) => named(s, now, today, tz)?,
                other => structured(other, now, today, tz)?,
            };
            if o.get("exclude_current_day").and_then(Value::as_bool) == Some(true) {
                let yesterday = today - Duration::days(1);
                if inner.range.to < today {
                    return Some(inner);
                }
                let from = inner.range.from.min(yesterday);
                return Some(Period::days(from, yesterday));
            }
            Some(inner)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_729_598_400; // 2024-10-22T12:00:00Z

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap_or_default()
    }

    fn r(p: &str) -> Option<(NaiveDate, NaiveDate, NaiveDate, NaiveDate)> {
        parse(Some(p), NOW, chrono_tz::UTC)
            .ok()
            .map(|p| (p.range.from, p.range.to, p.previous.from, p.previous.to))
    }

    #[test]
    fn named_periods_and_their_previous_periods() {
        let thirty = Some((
            d(2024, 9, 23),
            d(2024, 10, 22),
            d(2024, 8, 24),
            d(2024, 9, 22),
        ));
        assert_eq!(r("30days"), thirty);
        assert_eq!(
            parse(None, NOW, chrono_tz::UTC).ok().map(|p| p.range),
            Some(Range {
                from: d(2024, 9, 23),
                to: d(2024, 10, 22)
            })
        );
        // Unknown periods answer as 30days, as Countly's getPeriodObject falls back.
        for unknown in [
            "week", "0days", "-3days", "[1,2,3]", "[5,1]", "abc", "{}", "today",
        ] {
            assert_eq!(r(unknown), thirty, "{unknown}");
        }
        assert!(parse(Some("99999days"), NOW, chrono_tz::UTC).is_err());
        assert_eq!(
            r("month"),
            Some((
                d(2024, 1, 1),
                d(2024, 10, 22),
                d(2023, 1, 1),
                d(2023, 10, 22)
            ))
        );
        assert_eq!(
            r("day"),
            Some((
                d(2024, 10, 1),
                d(2024, 10, 22),
                d(2024, 9, 1),
                d(2024, 9, 22)
            ))
        );
        assert_eq!(
            r("hour"),
            Some((
                d(2024, 10, 22),
                d(2024, 10, 22),
                d(2024, 10, 21),
                d(2024, 10, 21)
            ))
        );
        assert_eq!(
            r("yesterday"),
            Some((
                d(2024, 10, 21),
                d(2024, 10, 21),
                d(2024, 10, 20),
                d(2024, 10, 20)
            ))
        );
        assert_eq!(
            r("prevMonth"),
            Some((d(2024, 9, 1), d(2024, 9, 30), d(2024, 8, 1), d(2024, 8, 30)))
        );
        assert_eq!(
            r("7days"),
            Some((
                d(2024, 10, 16),
                d(2024, 10, 22),
                d(2024, 10, 9),
                d(2024, 10, 15)
            ))
        );
        assert_eq!(
            r("2weeks"),
            Some((
                d(2024, 10, 9),
                d(2024, 10, 22),
                d(2024, 9, 25),
                d(2024, 10, 8)
            ))
        );
        assert_eq!(r("1months").map(|p| p.0), Some(d(2024, 9, 23)));
        assert_eq!(
            r("2years"),
            Some((
                d(2023, 1, 1),
                d(2024, 10, 22),
                d(2022, 1, 1),
                d(2023, 10, 22)
            ))
        );
        // The last 36 hours end at noon today: yesterday and today.
        assert_eq!(
            r("36hours").map(|p| (p.0, p.1)),
            Some((d(2024, 10, 21), d(2024, 10, 22)))
        );
        assert_eq!(
            parse(Some("60days"), NOW, chrono_tz::UTC)
                .ok()
                .map(|p| p.months()),
            Some(vec![(2024, 6), (2024, 7), (2024, 8), (2024, 9), (2024, 10)])
        );
    }

    #[test]
    fn ranges_since_and_dates() {
        // Seconds (10 digits) and milliseconds (13) name the same days.
        let ms = r("[1729036800000,1729555200000]");
        assert_eq!(
            ms.map(|p| (p.0, p.1)),
            Some((d(2024, 10, 16), d(2024, 10, 22)))
        );
        assert_eq!(r("[1729036800,1729555200]"), ms);
        assert_eq!(
            ms.map(|p| (p.2, p.3)),
            Some((d(2024, 10, 9), d(2024, 10, 15)))
        );
        assert_eq!(r(r#"["16-10-2024","22-10-2024"]"#), ms);
        assert_eq!(r(r#"["16-10-2024 00:00:00","22-10-2024 23:59:59"]"#), ms);
        assert_eq!(
            r(r#"{"since":1729036800000}"#).map(|p| (p.0, p.1)),
            Some((d(2024, 10, 16), d(2024, 10, 22)))
        );
        assert_eq!(
            r(r#"{"period":"7days","exclude_current_day":true}"#).map(|p| (p.0, p.1)),
            Some((d(2024, 10, 16), d(2024, 10, 21)))
        );
        assert_eq!(
            r(r#"{"period":"7days","exclude_current_day":false}"#),
            r("7days")
        );
        assert_eq!(
            r("21-10-2024"),
            Some((
                d(2024, 10, 21),
                d(2024, 10, 21),
                d(2024, 10, 20),
                d(2024, 10, 20)
            ))
        );
    }

    #[test]
    fn ranges_are_local_days() {
        // 2024-10-22T22:30Z is the 23rd in Istanbul.
        let p = parse(
            Some("[1729636200000,1729636200000]"),
            NOW,
            chrono_tz::Europe::Istanbul,
        )
        .ok();
        assert_eq!(
            p.map(|p| p.range),
            Some(Range {
                from: d(2024, 10, 23),
                to: d(2024, 10, 23)
            })
        );
        let p = parse(Some("30days"), 1_735_689_600, chrono_tz::UTC).ok(); // 2025-01-01
        assert_eq!(p.map(|x| x.range.years()), Some(vec![2024, 2025]));
    }
}
