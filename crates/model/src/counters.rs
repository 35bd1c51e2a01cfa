//! Reading counters and meta lists back: any mix of hashes and sets in one pipelined
//! round trip.

use crate::error::StoreError;
use tally_redis::resp::Replies;
use tally_redis::{Pool, Route};

/// An `XRANGE`/`XREVRANGE` page: (entry id, fields).
pub type StreamPage = Vec<(String, Vec<(String, String)>)>;

/// A batch of reads, answered together.
#[derive(Default)]
pub struct Reads {
    pipe: redis::Pipeline,
    n: usize,
}

/// A handle to one read's answer in [`Answers`].
#[derive(Debug, Clone, Copy)]
pub struct Slot(usize);

impl Reads {
    pub fn new() -> Reads {
        Reads::default()
    }

    /// All fields of a hash.
    pub fn hash(&mut self, key: &str) -> Slot {
        self.pipe.cmd("HGETALL").arg(key);
        self.push()
    }

    /// All members of a set.
    pub fn set(&mut self, key: &str) -> Slot {
        self.pipe.cmd("SMEMBERS").arg(key);
        self.push()
    }

    /// All elements of a list.
    pub fn list(&mut self, key: &str) -> Slot {
        self.pipe.cmd("LRANGE").arg(key).arg(0).arg(-1);
        self.push()
    }

    /// The estimated cardinality of a HyperLogLog.
    pub fn pfcount(&mut self, key: &str) -> Slot {
        self.pipe.cmd("PFCOUNT").arg(key);
        self.push()
    }

    fn push(&mut self) -> Slot {
        self.n += 1;
        Slot(self.n - 1)
    }

    /// Reads everything in one round trip. The replies are parsed in place
    /// ([`tally_redis::resp`]): a year of counters is thousands of fields, none copied.
    /// Every key read must live at `route` (one app's keys: [`crate::keys::route`]).
    pub async fn run(self, pool: &Pool, route: Route<'_>) -> Result<Answers, StoreError> {
        if self.n == 0 {
            return Ok(Answers(Replies::default()));
        }
        Ok(Answers(pool.run_reads(route, &self.pipe).await?))
    }
}

/// Whether `field` is an additive counter, whose month and year totals are the sums of its
/// days and so are not written: a begin_session with metrics writes about a third fewer
/// counter fields. As in Countly, the reader sums them from the days of the months it
/// loads (`<day>.<field>`). Additive are sessions (`t`), new users (`n`), requests (`e`),
/// duration (`d`), frequency and duration ranges (`f.<r>`, `ds.<r>`), a value's `t` and
/// `n`, and an event's or segment value's count, sum and duration (`c`, `s`, `dur`).
/// Unique users (`u`) and loyalty (`l.<r>`, counted where the session is unique) do not add
/// up over days, so they keep their month and year fields.
///
/// Field names are unambiguous here: values and segment keys never hold a `.` (the
/// collector replaces or drops it), so the last part is always the counter's own name.
pub fn summed(field: &str) -> bool {
    let (head, last) = match field.rsplit_once('.') {
        Some((h, l)) => (Some(h), l),
        None => (None, field),
    };
    match last {
        "t" | "n" | "e" | "d" | "c" | "s" | "dur" => true,
        _ => {
            matches!(head, Some("f" | "ds"))
                && !last.is_empty()
                && last.bytes().all(|b| b.is_ascii_digit())
        }
    }
}

/// A year-hash field's month (`1`..`12`) and the rest of its name: `10.Android.t` is
/// October's `Android.t`. Week (`w43.u`) and year fields have none.
pub fn month_field(field: &str) -> Option<(u32, &str)> {
    numbered(field, 12)
}

/// A Countly week field of a year hash: `w43.u`, `w43.f.1`.
pub fn week_field(field: &str) -> bool {
    let first = field.split('.').next().unwrap_or("");
    first
        .strip_prefix('w')
        .is_some_and(|w| w.parse::<u32>().is_ok())
}

/// A month-hash field's day (`1`..`31`) and the rest of its name: `22.t`.
pub fn day_field(field: &str) -> Option<(u32, &str)> {
    numbered(field, 31)
}

/// `<n>.<rest>` with `n` in `1..=max`, spelled without a leading zero.
fn numbered(field: &str, max: u32) -> Option<(u32, &str)> {
    let (n, rest) = field.split_once('.')?;
    if n.is_empty() || n.len() > 2 || n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = n.parse().ok()?;
    (n <= max).then_some((n, rest))
}

pub struct Answers(Replies);

impl Answers {
    /// The (field, value) pairs of a hash read, borrowed from the reply (no copies).
    pub fn hash_pairs(&self, slot: Slot) -> Vec<(&str, &str)> {
        self.0.pairs(slot.0)
    }

    /// An integer answer (0 when absent).
    pub fn int(&self, slot: Slot) -> i64 {
        self.0.int(slot.0).unwrap_or(0)
    }

    /// The elements of a list read, in order.
    pub fn list(&self, slot: Slot) -> Vec<String> {
        self.0
            .strings(slot.0)
            .into_iter()
            .map(String::from)
            .collect()
    }

    /// The members of a set read, sorted.
    pub fn set(&self, slot: Slot) -> Vec<String> {
        let mut out: Vec<String> = self
            .0
            .strings(slot.0)
            .into_iter()
            .map(String::from)
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn additive_counters_are_summed_from_days() {
        for f in [
            "t",
            "n",
            "e",
            "d",
            "f.0",
            "f.11",
            "ds.7",
            "US.t",
            "US.n",
            "Android.t",
            "Android.n",
            "c",
            "s",
            "dur",
            "iPhone:12.c",
            "red.s",
            "red.dur",
            "u.t",
            "l.n",
        ] {
            assert!(summed(f), "{f}");
        }
        for f in [
            "u",
            "l.0",
            "l.8",
            "US.u",
            "Android.u",
            "f.u",
            "ds.u",
            "f.",
            "f.x",
            "x.3",
            "",
            "tt",
        ] {
            assert!(!summed(f), "{f}");
        }
    }

    #[test]
    fn month_fields_are_told_from_week_and_year_fields() {
        assert_eq!(month_field("10.Android.t"), Some((10, "Android.t")));
        assert_eq!(month_field("1.t"), Some((1, "t")));
        assert_eq!(month_field("12.f.3"), Some((12, "f.3")));
        for f in [
            "t",
            "w43.u",
            "13.t",
            "0.t",
            "010.t",
            "01.t",
            ".t",
            "Android.t",
            "+1.t",
        ] {
            assert_eq!(month_field(f), None, "{f}");
        }
        assert!(week_field("w43.u") && week_field("w1.f.0"));
        assert!(!week_field("wifi.u") && !week_field("w.u") && !week_field("10.u"));
        assert_eq!(day_field("31.Android.n"), Some((31, "Android.n")));
        assert_eq!(day_field("13.t"), Some((13, "t")));
        for f in ["t", "32.t", "0.t", "07.t", "w43.u"] {
            assert_eq!(day_field(f), None, "{f}");
        }
    }
}
