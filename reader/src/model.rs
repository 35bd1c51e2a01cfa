//! Countly's dashboard model over Tally's counters: a family's values by day and its
//! stored uniques by week, month and year, loaded once for a period and the one before,
//! and the figures Countly's dashboard derives from them (totals, unique-user estimates,
//! change against the previous period). `top_events` and the `/o/analytics/*` routes are
//! built on it.

use crate::period::{Kind, Period};
use chrono::{Datelike, NaiveDate};
use serde_json::{json, Value};
use std::collections::HashMap;
use tally_model::counters::{day_field, Reads, Slot};
use tally_model::keys::{self, AppId, Family, Period as Bucket};
use tally_model::StoreError;
use tally_redis::Pool;

/// One family's counters for some months: day fields by date, and year-hash fields
/// (week, month and year uniques) by year.
#[derive(Default)]
pub struct Loaded {
    days: HashMap<NaiveDate, HashMap<String, f64>>,
    years: HashMap<i32, HashMap<String, f64>>,
    /// Hour fields of the days whose hours were read: (day, hour) -> field -> value.
    hours: HashMap<(NaiveDate, u32), HashMap<String, f64>>,
}

/// One family's reads: its month hashes, its year hashes and the hour hashes of days.
type Wanted = (
    Vec<(i32, u32, Slot)>,
    Vec<(i32, Slot)>,
    Vec<(NaiveDate, Slot)>,
);

/// Reads for several families in one round trip.
#[derive(Default)]
pub struct Batch {
    reads: Reads,
    wanted: Vec<Wanted>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Adds `family` over `months` (and the year hashes of their years); returns its index
    /// in the answer of [`Batch::run`].
    pub fn family(&mut self, app: &AppId, family: &Family, months: &[(i32, u32)]) -> usize {
        let mut years: Vec<i32> = months.iter().map(|(y, _)| *y).collect();
        years.dedup();
        let m = months
            .iter()
            .map(|&(y, mo)| {
                let k = keys::counters(app, family, Bucket::Month(y, mo));
                (y, mo, self.reads.hash(&k))
            })
            .collect();
        let y = years
            .into_iter()
            .map(|y| {
                (
                    y,
                    self.reads
                        .hash(&keys::counters(app, family, Bucket::Year(y))),
                )
            })
            .collect();
        self.wanted.push((m, y, Vec::new()));
        self.wanted.len() - 1
    }

    /// Adds the hour hashes of `days` to family `i` (from [`Batch::family`]).
    pub fn hours(&mut self, app: &AppId, family: &Family, i: usize, days: &[NaiveDate]) {
        let slots: Vec<(NaiveDate, Slot)> = days
            .iter()
            .map(|d| {
                let k = keys::counters(app, family, Bucket::Hours(d.year(), d.month(), d.day()));
                (*d, self.reads.hash(&k))
            })
            .collect();
        if let Some(w) = self.wanted.get_mut(i) {
            w.2.extend(slots);
        }
    }

    pub async fn run(self, pool: &Pool, app: &AppId) -> Result<Vec<Loaded>, StoreError> {
        let a = self.reads.run(pool, keys::route(app)).await?;
        Ok(self
            .wanted
            .into_iter()
            .map(|(months, years, hours)| {
                let mut l = Loaded::default();
                for (d, slot) in hours {
                    for (f, v) in a.hash_pairs(slot) {
                        let Some((h, rest)) = f.split_once('.') else {
                            continue;
                        };
                        let (Ok(h), Ok(v)) = (h.parse::<u32>(), v.parse::<f64>()) else {
                            continue;
                        };
                        *l.hours
                            .entry((d, h))
                            .or_default()
                            .entry(rest.to_string())
                            .or_default() += v;
                    }
                }
                for (y, m, slot) in months {
                    for (f, v) in a.hash_pairs(slot) {
                        let Some((d, rest)) = day_field(f) else {
                            continue;
                        };
                        let Some(date) = NaiveDate::from_ymd_opt(y, m, d) else {
                            continue;
                        };
                        let Ok(v) = v.parse::<f64>() else { continue };
                        *l.days
                            .entry(date)
                            .or_default()
                            .entry(rest.to_string())
                            .or_default() += v;
                    }
                }
                for (y, slot) in years {
                    let fields = l.years.entry(y).or_default();
                    for (f, v) in a.hash_pairs(slot) {
                        if let Ok(v) = v.parse::<f64>() {
                            fields.insert(f.to_string(), v);
                        }
                    }
                }
                l
            })
            .collect())
    }
}

impl Loaded {
    /// A day's value of `field` (`t`, `u`, `Android.t`, `c`).
    pub fn day(&self, d: NaiveDate, field: &str) -> f64 {
        self.days
            .get(&d)
            .and_then(|f| f.get(field))
            .copied()
            .unwrap_or(0.0)
    }

    /// An hour's value of `field`.
    pub fn hour(&self, d: NaiveDate, h: u32, field: &str) -> f64 {
        self.hours
            .get(&(d, h))
            .and_then(|f| f.get(field))
            .copied()
            .unwrap_or(0.0)
    }

    /// The sum of `field` over days.
    pub fn sum(&self, days: &[NaiveDate], field: &str) -> f64 {
        days.iter().map(|d| self.day(*d, field)).sum()
    }

    /// The fields a day has whose name is `<value>.<field>`: the values of a metric seen
    /// on those days.
    pub fn values(&self, days: &[NaiveDate], field: &str) -> Vec<String> {
        let suffix = format!(".{field}");
        let mut out: Vec<String> = days
            .iter()
            .filter_map(|d| self.days.get(d))
            .flat_map(|f| f.keys())
            .filter_map(|k| k.strip_suffix(&suffix))
            .filter(|v| !v.contains('.') && v.parse::<u32>().is_err())
            .map(str::to_string)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// A stored unique count (`u`, or `<value>.u` with `prefix`) of one of Countly's
    /// buckets: a day `YYYY.M.D`, a week `YYYY.wN`, a month `YYYY.M`, a year `YYYY`.
    pub fn bucket(&self, key: &str, prefix: &str) -> f64 {
        self.bucket_field(key, &format!("{prefix}u"))
    }

    /// A field of one of Countly's buckets (as [`Loaded::bucket`], any field: `l.2`).
    pub fn bucket_field(&self, key: &str, field: &str) -> f64 {
        let parts: Vec<&str> = key.split('.').collect();
        match parts.as_slice() {
            [y, w] if w.starts_with('w') => self.year_field(y, &format!("{w}.{field}")),
            [y, m] => self.year_field(y, &format!("{m}.{field}")),
            [y] => self.year_field(y, field),
            [y, m, d] => {
                let date = (|| {
                    NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
                })();
                date.map_or(0.0, |d| self.day(d, field))
            }
            _ => 0.0,
        }
    }

    fn year_field(&self, y: &str, field: &str) -> f64 {
        y.parse::<i32>()
            .ok()
            .and_then(|y| self.years.get(&y))
            .and_then(|f| f.get(field))
            .copied()
            .unwrap_or(0.0)
    }

    /// A month's stored unique count.
    pub fn month_unique(&self, y: i32, m: u32, prefix: &str) -> f64 {
        self.bucket(&format!("{y}.{m}"), prefix)
    }
}

/// The days a period covers and the days it compares with.
pub struct Days {
    pub current: Vec<NaiveDate>,
    pub previous: Vec<NaiveDate>,
}

pub fn days(p: &Period) -> Days {
    let current: Vec<NaiveDate> = p
        .range
        .from
        .iter_days()
        .take_while(|d| *d <= p.range.to)
        .collect();
    let previous = current.iter().map(|d| p.before(*d)).collect();
    Days { current, previous }
}

/// Countly's unique users of a period (and of the one before), for the users family or a
/// value of a metric (`prefix` `"Android."`): a day's, month's or year's stored count
/// for those periods; for a number of days, the sum of the stored counts of its day,
/// week and month buckets, bounded by those of its check buckets (Countly's estimate,
/// `is_estimate`).
pub fn uniques(l: &Loaded, p: &Period, obj: &Value, prefix: &str) -> (f64, f64, bool) {
    let strings = |k: &str| -> Vec<String> {
        obj[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    match p.kind {
        Kind::Today | Kind::Yesterday | Kind::OneDay => (
            l.day(p.range.from, &format!("{prefix}u")),
            l.day(p.previous.from, &format!("{prefix}u")),
            false,
        ),
        Kind::ThisMonth | Kind::PrevMonth => (
            l.month_unique(p.range.from.year(), p.range.from.month(), prefix),
            l.month_unique(p.previous.from.year(), p.previous.from.month(), prefix),
            false,
        ),
        Kind::ThisYear => (
            l.bucket(&p.range.from.year().to_string(), prefix),
            l.bucket(&p.previous.from.year().to_string(), prefix),
            false,
        ),
        Kind::Days if p.range.from == p.range.to => (
            l.day(p.range.from, &format!("{prefix}u")),
            l.day(p.previous.from, &format!("{prefix}u")),
            false,
        ),
        Kind::Days => {
            let est = |u: &str, c: &str| {
                let sum = |k: &str| strings(k).iter().map(|b| l.bucket(b, prefix)).sum::<f64>();
                sum(u).min(sum(c))
            };
            (
                est("uniquePeriodArr", "uniquePeriodCheckArr"),
                est("previousUniquePeriodArr", "previousUniquePeriodCheckArr"),
                true,
            )
        }
    }
}

/// Countly's `getPercentChange`: `{change, trend}` from the previous to the current value.
pub fn change(prev: f64, cur: f64) -> (String, &'static str) {
    if prev == 0.0 {
        return ("NA".into(), "u");
    }
    if cur == 0.0 {
        return ("∞".into(), "d");
    }
    let x = (cur - prev) / prev * 100.0;
    let pct = short_number(x);
    (format!("{pct}%"), if x < 0.0 { "d" } else { "u" })
}

/// Countly's `getShortNumber` of a percentage with one decimal: `K` from 10,000, `M` from
/// a million, and a `.0` dropped.
fn short_number(x: f64) -> String {
    let (v, unit) = if x.abs() >= 1e6 {
        (x / 1e6, "M")
    } else if x.abs() >= 1e4 {
        (x / 1e3, "K")
    } else {
        (x, "")
    };
    let s = fixed1(v);
    let s = s.strip_suffix(".0").map(str::to_string).unwrap_or(s);
    format!("{s}{unit}")
}

/// `{total, change, trend}`, Countly's dashboard figure.
pub fn figure(cur: f64, prev: f64) -> Value {
    let (c, t) = change(prev, cur);
    json!({"total": num(cur), "change": c, "trend": t})
}

/// A number as JSON: whole numbers as integers.
pub fn num(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

/// JavaScript's `toFixed(1)`: a tie goes to the larger number (`3.25` is `3.3`).
pub fn fixed1(x: f64) -> String {
    format!("{:.1}", (x * 10.0).round() / 10.0)
}

/// Countly's `timeString` of minutes: `3.2 min`, `8.1 hours`, `2.0 days`, `0.5 years`.
pub fn time_string(minutes: f64) -> String {
    if minutes >= 142_560.0 {
        format!("{} years", fixed1(minutes / 525_600.0))
    } else if minutes >= 1440.0 {
        format!("{} days", fixed1(minutes / 1440.0))
    } else if minutes >= 60.0 {
        format!("{} hours", fixed1(minutes / 60.0))
    } else {
        format!("{} min", fixed1(minutes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_as_countly_prints_them() {
        assert_eq!(change(0.0, 5.0), ("NA".into(), "u"));
        assert_eq!(change(5.0, 0.0), ("∞".into(), "d"));
        assert_eq!(change(100.0, 200.0), ("100%".into(), "u"));
        assert_eq!(change(332.0, 980.0), ("195.2%".into(), "u"));
        assert_eq!(change(100.0, 99.0), ("-1%".into(), "d"));
        assert_eq!(change(1.0, 200.0), ("19.9K%".into(), "u"));
        assert_eq!(time_string(3.25), "3.3 min");
        assert_eq!(time_string(90.0), "1.5 hours");
        assert_eq!(time_string(2880.0), "2.0 days");
    }
}
