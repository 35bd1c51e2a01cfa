//! `method=get_period_obj`: Countly's period object (`getPeriodObject` of its
//! `api/lib/countly.common.js`), the description of a period a Countly dashboard computes
//! its charts and its unique-user estimates from: the days of the period and of the one
//! before, the week and month buckets whose unique counts may be added up, the labels.
//!
//! The unique-bucket arrays follow Countly's rules: a whole month of the window is one
//! bucket, a whole Countly week (`ceil(day of year / 7)`) not inside a whole month is
//! one, the other days are days; the check arrays take a month with at least half its
//! days, else the week. Countly compares the current week in another numbering and
//! replaces keys as text (so `2024.w1` can spoil `2024.w12`); Tally does neither.

use crate::period::{Kind, Period};
use chrono::{Datelike, Duration, NaiveDate, TimeZone};
use chrono_tz::Tz;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};

/// Countly's week of a day: `ceil(day of year / 7)`.
pub fn countly_week(d: NaiveDate) -> u32 {
    d.ordinal().div_ceil(7)
}

fn day_key(d: NaiveDate) -> String {
    format!("{}.{}.{}", d.year(), d.month(), d.day())
}

fn week_key(d: NaiveDate) -> String {
    format!("{}.w{}", d.year(), countly_week(d))
}

fn month_key(d: NaiveDate) -> String {
    format!("{}.{}", d.year(), d.month())
}

fn days_in_month(d: NaiveDate) -> u32 {
    let first = d.with_day(1).unwrap_or(d);
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(first);
    (next - first).num_days() as u32
}

/// The days from `from` to `to`, inclusive.
fn days(from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
    from.iter_days().take_while(|d| *d <= to).collect()
}

/// Bucket keys for unique users over `window` (Countly's `getUniqArray`).
fn unique_buckets(window: &[NaiveDate], today: NaiveDate) -> Vec<String> {
    let mut week_days: HashMap<String, u32> = HashMap::new();
    let mut month_days: HashMap<String, u32> = HashMap::new();
    for d in window {
        *week_days.entry(week_key(*d)).or_default() += 1;
        *month_days.entry(month_key(*d)).or_default() += 1;
    }
    let this_week = week_key(today);
    let full_week = |k: &str| k == this_week || week_days.get(k).is_some_and(|n| *n >= 7);
    let full_month = |d: NaiveDate| {
        let need = if (d.year(), d.month()) == (today.year(), today.month()) {
            today.day()
        } else {
            days_in_month(d)
        };
        month_days.get(&month_key(d)).is_some_and(|n| *n >= need)
    };
    // A week that shares a day with a whole month is not a bucket of its own.
    let rejected: std::collections::HashSet<String> = window
        .iter()
        .filter(|d| full_month(**d))
        .map(|d| week_key(*d))
        .collect();
    let mut out: Vec<String> = Vec::new();
    for d in window {
        let k = if full_month(*d) {
            month_key(*d)
        } else {
            let w = week_key(*d);
            if full_week(&w) && !rejected.contains(&w) {
                w
            } else {
                day_key(*d)
            }
        };
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

/// The buckets that bound the unique sum (Countly's `getUniqCheckArray`): a month with at
/// least half its days in the window (this month: half of its days so far), else the
/// week.
fn check_buckets(window: &[NaiveDate], today: NaiveDate) -> Vec<String> {
    let mut month_days: HashMap<String, u32> = HashMap::new();
    for d in window {
        *month_days.entry(month_key(*d)).or_default() += 1;
    }
    let mut out: Vec<String> = Vec::new();
    for d in window {
        let m = month_key(*d);
        let size = if (d.year(), d.month()) == (today.year(), today.month()) {
            today.day()
        } else {
            days_in_month(*d)
        };
        let k = if month_days.get(&m).is_some_and(|n| 2 * *n >= size) {
            m
        } else {
            week_key(*d)
        };
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

/// `{year: {month: {"w<week>": {day: {}}}}}` of the days; a month strictly between the
/// first and the last is `{}`, as Countly writes it.
fn unique_map(window: &[NaiveDate]) -> Value {
    let (Some(first), Some(last)) = (window.first(), window.last()) else {
        return json!({});
    };
    let (fm, lm) = ((first.year(), first.month()), (last.year(), last.month()));
    let mut years: BTreeMap<i32, BTreeMap<u32, Map<String, Value>>> = BTreeMap::new();
    for d in window {
        let months = years.entry(d.year()).or_default();
        let month = months.entry(d.month()).or_default();
        let ym = (d.year(), d.month());
        if ym != fm && ym != lm {
            continue;
        }
        let week = month
            .entry(format!("w{}", countly_week(*d)))
            .or_insert_with(|| json!({}));
        if let Value::Object(w) = week {
            w.insert(d.day().to_string(), json!({}));
        }
    }
    let out: Map<String, Value> = years
        .into_iter()
        .map(|(y, months)| {
            let m: Map<String, Value> = months
                .into_iter()
                .map(|(m, weeks)| (m.to_string(), Value::Object(weeks)))
                .collect();
            (y.to_string(), Value::Object(m))
        })
        .collect();
    Value::Object(out)
}

fn local_ms(d: NaiveDate, end_of_day: bool, tz: Tz) -> i64 {
    let t = if end_of_day {
        d.and_hms_milli_opt(23, 59, 59, 999)
    } else {
        d.and_hms_opt(0, 0, 0)
    }
    .unwrap_or_default();
    tz.from_local_datetime(&t)
        .earliest()
        .map(|t| t.timestamp_millis())
        .unwrap_or_else(|| t.and_utc().timestamp_millis())
}

/// The period object of `p`, for an app in `tz`, at `now` (UNIX seconds).
pub fn render(p: &Period, now: i64, tz: Tz) -> Value {
    let today = tally_model::time::local_date(now, tz);
    let current = days(p.range.from, p.range.to);
    let previous: Vec<NaiveDate> = current.iter().map(|d| p.before(*d)).collect();
    let n = current.len();
    let special = p.kind == Kind::Days;
    let one_day = matches!(p.kind, Kind::Today | Kind::Yesterday | Kind::OneDay);
    // Countly's previous window for the unique buckets: the days just before the period.
    let before: Vec<NaiveDate> = (1..=n as i64)
        .rev()
        .map(|i| p.range.from - Duration::days(i))
        .collect();
    let uniques = special && n > 1;
    let arr = |f: &dyn Fn() -> Vec<String>| if uniques { f() } else { Vec::new() };
    let (active, prev_active): (Value, Value) = match p.kind {
        Kind::Today | Kind::Yesterday | Kind::OneDay => (
            day_key(p.range.from).into(),
            day_key(p.range.from - Duration::days(1)).into(),
        ),
        Kind::ThisMonth | Kind::PrevMonth => (
            month_key(p.range.from).into(),
            month_key(p.previous.from).into(),
        ),
        Kind::ThisYear => (p.range.from.year().into(), (p.range.from.year() - 1).into()),
        Kind::Days if n == 1 => (day_key(p.range.from).into(), "NA".into()),
        Kind::Days => ("NA".into(), "NA".into()),
    };
    let (max, min): (Value, Value) = match p.kind {
        _ if one_day => (23.into(), 0.into()),
        Kind::ThisMonth | Kind::PrevMonth => (days_in_month(p.range.from).into(), 1.into()),
        Kind::ThisYear => (12.into(), 1.into()),
        _ => ("NA".into(), "NA".into()),
    };
    let date_string = match p.kind {
        Kind::Today => "HH:mm",
        Kind::Yesterday | Kind::OneDay => "D MMM, HH:mm",
        Kind::ThisYear => "MMM",
        _ => "D MMM",
    };
    let mut month_ids: Vec<String> = Vec::new();
    let mut zero_ids: Vec<String> = Vec::new();
    for (c, prev) in current.iter().zip(&previous) {
        for d in [c, prev] {
            let z = format!("{}:0", d.year());
            let m = format!("{}:{}", d.year(), d.month());
            if !zero_ids.contains(&z) {
                zero_ids.push(z);
            }
            if !month_ids.contains(&m) {
                month_ids.push(m);
            }
        }
    }
    let start = local_ms(p.range.from, false, tz);
    let end = local_ms(p.range.to, true, tz);
    let now_ms = now * 1000;
    json!({
        "start": start,
        "end": end,
        "currentPeriodArr": current.iter().map(|d| day_key(*d)).collect::<Vec<_>>(),
        "previousPeriodArr": previous.iter().map(|d| day_key(*d)).collect::<Vec<_>>(),
        "dateString": date_string,
        "isSpecialPeriod": special,
        "daysInPeriod": n,
        "periodContainsToday": start <= now_ms && now_ms <= end,
        "uniquePeriodArr": arr(&|| unique_buckets(&current, today)),
        "uniquePeriodCheckArr": arr(&|| check_buckets(&current, today)),
        "previousUniquePeriodArr": arr(&|| unique_buckets(&before, today)),
        "previousUniquePeriodCheckArr": arr(&|| check_buckets(&before, today)),
        "activePeriod": active,
        "previousPeriod": prev_active,
        "periodMax": max,
        "periodMin": min,
        "reqMonthDbDateIds": month_ids,
        "reqZeroDbDateIds": zero_ids,
        "uniqueMap": unique_map(&current),
        "uniquePrevMap": unique_map(&previous),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-03-15T10:00:00Z, the day Countly's examples were worked out for.
    const NOW: i64 = 1_710_496_800;

    fn obj(p: &str) -> Value {
        let period = crate::period::parse(Some(p), NOW, chrono_tz::UTC).expect("a period");
        render(&period, NOW, chrono_tz::UTC)
    }

    #[test]
    fn seven_days_as_countly_computes_it() {
        let o = obj("7days");
        assert_eq!(o["start"], json!(1_709_942_400_000_i64));
        assert_eq!(o["end"], json!(1_710_547_199_999_i64));
        assert_eq!(o["currentPeriodArr"][0], json!("2024.3.9"));
        assert_eq!(o["previousPeriodArr"][6], json!("2024.3.8"));
        assert_eq!(o["daysInPeriod"], json!(7));
        assert_eq!(o["isSpecialPeriod"], json!(true));
        assert_eq!(o["periodContainsToday"], json!(true));
        assert_eq!(
            o["uniquePeriodArr"],
            json!(["2024.3.9", "2024.3.10", "2024.w11"])
        );
        assert_eq!(o["uniquePeriodCheckArr"], json!(["2024.w10", "2024.w11"]));
        assert_eq!(
            o["previousUniquePeriodCheckArr"],
            json!(["2024.w9", "2024.w10"])
        );
        assert_eq!(o["activePeriod"], json!("NA"));
        assert_eq!(o["reqMonthDbDateIds"], json!(["2024:3"]));
        assert_eq!(o["reqZeroDbDateIds"], json!(["2024:0"]));
        assert_eq!(
            o["uniqueMap"],
            json!({"2024":{"3":{"w10":{"9":{},"10":{}},"w11":{"11":{},"12":{},"13":{},"14":{},"15":{}}}}})
        );
    }

    #[test]
    fn named_periods() {
        let o = obj("hour");
        assert_eq!(
            (o["activePeriod"].clone(), o["previousPeriod"].clone()),
            (json!("2024.3.15"), json!("2024.3.14"))
        );
        assert_eq!(
            (o["periodMax"].clone(), o["periodMin"].clone()),
            (json!(23), json!(0))
        );
        assert_eq!(o["dateString"], json!("HH:mm"));
        assert_eq!(o["uniquePeriodArr"], json!([]));
        let o = obj("month");
        assert_eq!(
            (o["activePeriod"].clone(), o["previousPeriod"].clone()),
            (json!(2024), json!(2023))
        );
        assert_eq!(o["daysInPeriod"], json!(75));
        assert_eq!(
            o["reqMonthDbDateIds"],
            json!(["2024:1", "2023:1", "2024:2", "2023:2", "2024:3", "2023:3"])
        );
        assert_eq!(o["reqZeroDbDateIds"], json!(["2024:0", "2023:0"]));
        assert_eq!(o["uniqueMap"]["2024"]["2"], json!({}));
        let o = obj("day");
        assert_eq!(
            (
                o["activePeriod"].clone(),
                o["previousPeriod"].clone(),
                o["periodMax"].clone()
            ),
            (json!("2024.3"), json!("2024.2"), json!(31))
        );
        let o = obj("yesterday");
        assert_eq!(o["periodContainsToday"], json!(false));
        assert_eq!(o["dateString"], json!("D MMM, HH:mm"));
        let o = obj("30days");
        assert_eq!(
            o["uniquePeriodArr"],
            json!([
                "2024.2.15",
                "2024.2.16",
                "2024.2.17",
                "2024.2.18",
                "2024.w8",
                "2024.2.26",
                "2024.2.27",
                "2024.2.28",
                "2024.2.29",
                "2024.3"
            ])
        );
        assert_eq!(o["uniquePeriodCheckArr"], json!(["2024.2", "2024.3"]));
        assert_eq!(
            o["previousUniquePeriodCheckArr"],
            json!(["2024.1", "2024.w5", "2024.w6", "2024.w7"])
        );
        assert_eq!(
            o["reqMonthDbDateIds"],
            json!(["2024:2", "2024:1", "2024:3"])
        );
        assert_eq!(o, obj("nonsense"));
    }
}
