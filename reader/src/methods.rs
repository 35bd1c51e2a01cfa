//! The `/o` methods: which hashes and lists each answer needs, and how it is assembled.

use crate::period::{Period as Span, Range};
use crate::shape::{escape, escape_meta, sort_meta, Num, Tree};
use chrono::{Datelike, NaiveDate};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use tally_config::Limits;
use tally_model::apps::App;
use tally_model::counters::{day_field, month_field, summed, week_field, Answers, Reads, Slot};
use tally_model::keys::{self, Family, Period};
use tally_model::texthash::TextMap;
use tally_model::StoreError;
use tally_redis::Pool;

/// What every method needs to know about the request.
pub struct Query<'a> {
    pub app: &'a App,
    /// The period (its days: `period.range`) and the one before it, both loaded.
    pub period: Span,
    /// `action=refresh`: only today, plus the year and month uniques.
    pub refresh: bool,
    pub today: NaiveDate,
    /// HTML-escape keys and strings (Countly's default; off with `noescape=1`).
    pub escape: bool,
    /// Hour buckets are answered for the last this many days of the period.
    pub hourly_days: i64,
}

impl<'a> Query<'a> {
    /// A query of `app` over `period`, at `now` (UNIX seconds), not a refresh.
    pub fn new(app: &'a App, period: Span, now: i64, escape: bool, hourly_days: i64) -> Query<'a> {
        Query {
            app,
            period,
            refresh: false,
            today: tally_model::time::local_date(now, app.timezone),
            escape,
            hourly_days,
        }
    }

    /// The days whose hour buckets the answer includes.
    fn hour_window(&self) -> Option<Range> {
        if self.refresh {
            return Some(Range {
                from: self.today,
                to: self.today,
            });
        }
        if self.hourly_days <= 0 {
            return None;
        }
        let from = (self.period.range.to - chrono::Duration::days(self.hourly_days - 1))
            .max(self.period.range.from);
        Some(Range {
            from,
            to: self.period.range.to,
        })
    }
}

/// The families and meta lists behind each Countly metric method.
pub fn metric_method(method: &str) -> Option<(&'static str, &'static [&'static str])> {
    Some(match method {
        "devices" => ("devices", &["devices", "manufacturers"]),
        "carriers" => ("carriers", &["carriers"]),
        "device_details" | "app_versions" => (
            "device_details",
            &[
                "os",
                "os_versions",
                "resolutions",
                "app_versions",
                "device_type",
            ],
        ),
        "density" => ("density", &["density"]),
        "langs" => ("langs", &["langs"]),
        "cities" => ("cities", &["cities"]),
        _ => return None,
    })
}

/// Meta lists of the `users` family (sessions, users, locations).
pub const USERS_META: &[&str] = &["countries", "f-ranges", "d-ranges", "l-ranges"];

/// What kind of family a time object is read for: `action=refresh` answers each
/// differently, as Countly does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Sessions, users, locations: today, and the year's and month's `u`, `f`, `ds`, `l`.
    Users,
    /// Metric methods and events: today's values only.
    Other,
}

struct TimeReads {
    kind: Kind,
    years: Vec<(String, Slot)>,
    months: Vec<(String, String, Slot)>,
    hours: Vec<(String, String, String, Slot)>,
}

fn read_time(r: &mut Reads, q: &Query, family: &Family, hourly: bool) -> TimeReads {
    let kind = if *family == Family::users() {
        Kind::Users
    } else {
        Kind::Other
    };
    let (years, months) = match (q.refresh, kind) {
        // Today, and the year's and month's uniques, frequencies and duration ranges: the
        // last two are sums of days, so the year's months are read too.
        (true, Kind::Users) => (
            vec![q.today.year()],
            (1..=q.today.month()).map(|m| (q.today.year(), m)).collect(),
        ),
        // Today's values only.
        (true, Kind::Other) => (Vec::new(), vec![(q.today.year(), q.today.month())]),
        (false, _) => (q.period.years(), q.period.months()),
    };
    let hour_days: Vec<NaiveDate> = match q.hour_window() {
        Some(w) if hourly => w.from.iter_days().take_while(|d| *d <= w.to).collect(),
        _ => Vec::new(),
    };
    let key = |p| keys::counters(&q.app.id, family, p);
    TimeReads {
        kind,
        years: years
            .into_iter()
            .map(|y| (y.to_string(), r.hash(&key(Period::Year(y)))))
            .collect(),
        months: months
            .into_iter()
            .map(|(y, m)| {
                (
                    y.to_string(),
                    m.to_string(),
                    r.hash(&key(Period::Month(y, m))),
                )
            })
            .collect(),
        hours: hour_days
            .into_iter()
            .map(|d| {
                let (y, m, day) = (d.year(), d.month(), d.day());
                let slot = r.hash(&key(Period::Hours(y, m, day)));
                (y.to_string(), m.to_string(), day.to_string(), slot)
            })
            .collect(),
    }
}

/// Whether a year-hash field is one `action=refresh` keeps for sessions: the year's or
/// this month's unique users and loyalty (`u`, `l.2`, `11.u`, `11.l.2`), not a country's
/// or a week's (Countly's refresh projects `u`, `f`, `ds` and `l` of the year and month).
fn refresh_unique(field: &str, month: u32) -> bool {
    let own = |f: &str| f == "u" || f.strip_prefix("l.").is_some_and(|r| !r.contains('.'));
    if week_field(field) {
        return false;
    }
    match month_field(field) {
        Some((m, rest)) => m == month && own(rest),
        None => own(field),
    }
}

/// The year's and this month's frequency and duration ranges for `action=refresh`: sums
/// of their days (`22.f.2`, `22.ds.0`).
fn refresh_ranges<'a>(
    tree: &mut Tree,
    months: impl Iterator<Item = (&'a str, &'a str, Vec<(&'a str, &'a str)>)>,
    this_month: &str,
) {
    let mut year: Totals<'a> = Totals::default();
    let mut month: Totals<'a> = Totals::default();
    let mut ys = "";
    for (y, m, fields) in months {
        ys = y;
        for (f, v) in fields {
            let Some((_, rest)) = day_field(f) else {
                continue;
            };
            let Some(n) = Num::parse(v) else { continue };
            if rest.starts_with("f.") || rest.starts_with("ds.") {
                year.add(rest, n);
                if m == this_month {
                    month.add(rest, n);
                }
            }
        }
    }
    if !ys.is_empty() {
        year.into_tree(tree, &[ys]);
        month.into_tree(tree, &[ys, this_month]);
    }
}

/// A year hash into `tree`: its unique users, loyalty and weeks. Additive totals
/// ([`summed`]) come from the days ([`add_month`]); such a field in a year hash was
/// written by a version before that, and its days hold the same count.
fn add_year(tree: &mut Tree, year: &str, fields: &[(&str, &str)]) {
    for (f, v) in fields {
        let total = month_field(f).map_or(*f, |(_, rest)| rest);
        if week_field(f) || !summed(total) {
            tree.add(&[year], f, v);
        }
    }
}

/// Sums of additive counters by name (borrowed from the replies): one map update a day
/// field, rather than one more tree entry for the month and one for the year to sort.
#[derive(Default)]
struct Totals<'a>(TextMap<&'a str, Num>);

impl<'a> Totals<'a> {
    fn add(&mut self, field: &'a str, v: Num) {
        self.0
            .entry(field)
            .and_modify(|sum| *sum = sum.plus(v))
            .or_insert(v);
    }

    fn into_tree(self, tree: &mut Tree, prefix: &[&str]) {
        for (f, v) in self.0 {
            tree.add_num(prefix, f, v);
        }
    }
}

/// A month hash into `tree`: its days, and the sums of its additive days as the month's
/// totals, added to the year's too. As in Countly, year and month totals are summed from
/// the months the period loads: a `30days` answer's year total covers those months only.
fn add_month<'a>(
    tree: &mut Tree,
    at: [&str; 2],
    fields: &[(&'a str, &'a str)],
    year: &mut Totals<'a>,
) {
    let mut month = Totals::default();
    for &(f, v) in fields {
        let Some(n) = Num::parse(v) else { continue };
        tree.add_num(&at, f, n);
        if let Some((_, rest)) = day_field(f).filter(|(_, rest)| summed(rest)) {
            month.add(rest, n);
        }
    }
    for (&f, &n) in &month.0 {
        year.add(f, n);
    }
    month.into_tree(tree, &at);
}

/// Adds one family's counters to `tree` in Countly's nesting.
fn fill_time(tree: &mut Tree, a: &Answers, t: &TimeReads, q: &Query) {
    let today_d = format!("{}.", q.today.day());
    if q.refresh && t.kind == Kind::Users {
        let this_month = q.today.month().to_string();
        refresh_ranges(
            tree,
            t.months
                .iter()
                .map(|(ys, ms, slot)| (ys.as_str(), ms.as_str(), a.hash_pairs(*slot))),
            &this_month,
        );
    }
    for (ys, slot) in &t.years {
        let fields = a.hash_pairs(*slot);
        if q.refresh {
            tree.add_hash(&[ys], &fields, |f| refresh_unique(f, q.today.month()));
        } else {
            add_year(tree, ys, &fields);
        }
    }
    let mut years: HashMap<&str, Totals> = HashMap::new();
    for (ys, ms, slot) in &t.months {
        let fields = a.hash_pairs(*slot);
        if q.refresh {
            if q.today.month().to_string() == *ms {
                tree.add_hash(&[ys, ms], &fields, |f| f.starts_with(&today_d));
            }
        } else {
            add_month(tree, [ys, ms], &fields, years.entry(ys).or_default());
        }
    }
    for (ys, totals) in years {
        totals.into_tree(tree, &[ys]);
    }
    for (ys, ms, ds, slot) in &t.hours {
        tree.add_hash(&[ys, ms, ds], &a.hash_pairs(*slot), |_| true);
    }
}

fn meta_lists(a: &Answers, slots: &[(String, Slot)], esc: bool) -> Map<String, Value> {
    let mut meta = Map::new();
    for (name, slot) in slots {
        let mut list = a.set(*slot);
        if list.is_empty() {
            continue;
        }
        sort_meta(&mut list);
        let list: Vec<Value> = list
            .iter()
            .map(|s| Value::from(escape_meta(s, esc)))
            .collect();
        meta.insert(escape(name, esc), Value::Array(list));
    }
    meta
}

/// The answer: `{}` when there is nothing at all, else the tree with its `meta`.
fn finish(tree: Tree, meta: Map<String, Value>, esc: bool) -> String {
    if tree.is_empty() && meta.is_empty() {
        return "{}".into();
    }
    tree.render(Some(&Value::Object(meta).to_string()), esc)
}

/// `sessions`, `users`, `locations` and the metric methods: one family's time object and
/// its meta lists, in one round trip.
pub async fn family(
    pool: &Pool,
    q: &Query<'_>,
    family: Family,
    meta: &[&str],
) -> Result<String, StoreError> {
    let mut r = Reads::new();
    // Only sessions have hour counters; metric families do not.
    let hourly = family == Family::users();
    let t = read_time(&mut r, q, &family, hourly);
    let meta_slots: Vec<(String, Slot)> = meta
        .iter()
        .map(|m| (m.to_string(), r.set(&keys::meta(&q.app.id, m))))
        .collect();
    let a = r.run(pool, keys::route(&q.app.id)).await?;
    let mut tree = Tree::new();
    fill_time(&mut tree, &a, &t, q);
    Ok(finish(
        tree,
        meta_lists(&a, &meta_slots, q.escape),
        q.escape,
    ))
}

/// The app's event keys, sorted, without Countly's internal `[CLY]_` events.
pub async fn event_keys(pool: &Pool, app: &App) -> Result<Vec<String>, StoreError> {
    let mut r = Reads::new();
    let s = r.set(&keys::meta(&app.id, "events"));
    Ok(r.run(pool, keys::route(&app.id)).await?.set(s))
}

/// `method=events`: one event (or the sum of several, `several`: asked as `events=[…]`),
/// optionally by one segmentation key. As in Countly, an event never segmented has no
/// `meta` key, and an answer for several events always has one (`{"meta":{}}` for keys
/// with no data).
pub async fn events(
    pool: &Pool,
    q: &Query<'_>,
    selected: &[String],
    several: bool,
    segmentation: Option<&str>,
) -> Result<String, StoreError> {
    if selected.is_empty() {
        return Ok(if several { r#"{"meta":{}}"# } else { "{}" }.into());
    }
    // Round trip 1: the data and each event's segmentation keys.
    let mut r = Reads::new();
    let times: Vec<TimeReads> = selected
        .iter()
        .map(|e| {
            let fam = match segmentation {
                Some(s) => Family::segment(e, s),
                None => Family::event(e),
            };
            read_time(&mut r, q, &fam, segmentation.is_none())
        })
        .collect();
    let seg_slots: Vec<Slot> = selected
        .iter()
        .map(|e| r.set(&keys::event_segments(&q.app.id, e)))
        .collect();
    let a = r.run(pool, keys::route(&q.app.id)).await?;
    let mut tree = Tree::new();
    for t in &times {
        fill_time(&mut tree, &a, t, q);
    }
    let mut segments: Vec<String> = seg_slots.iter().flat_map(|s| a.set(*s)).collect();
    segments.sort();
    segments.dedup();

    // Round trip 2: the values of each segmentation key, for the meta lists.
    let mut r = Reads::new();
    let mut value_slots = Vec::new();
    for s in &segments {
        for e in selected {
            value_slots.push((s.clone(), r.set(&keys::segment_values(&q.app.id, e, s))));
        }
    }
    let values = r.run(pool, keys::route(&q.app.id)).await?;
    let mut meta = Map::new();
    let mut by_segment: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (s, slot) in value_slots {
        by_segment.entry(s).or_default().extend(values.set(slot));
    }
    for (s, mut values) in by_segment {
        values.sort();
        values.dedup();
        if !values.is_empty() {
            let list: Vec<Value> = values
                .iter()
                .map(|v| Value::from(escape_meta(v, q.escape)))
                .collect();
            meta.insert(escape(&s, q.escape), Value::Array(list));
        }
    }
    if !segments.is_empty() {
        let list: Vec<Value> = segments
            .iter()
            .map(|s| Value::from(escape_meta(s, q.escape)))
            .collect();
        meta.insert("segments".into(), Value::Array(list));
    }
    if several {
        return Ok(tree.render(Some(&Value::Object(meta).to_string()), q.escape));
    }
    if meta.is_empty() {
        return Ok(if tree.is_empty() {
            "{}".into()
        } else {
            tree.render(None, q.escape)
        });
    }
    Ok(finish(tree, meta, q.escape))
}

fn limits_json(l: &Limits) -> Value {
    json!({
        "event_limit": l.event_keys,
        "event_segmentation_limit": l.segments_per_event,
        "event_segmentation_value_limit": l.values_per_segment,
    })
}

/// The app's event keys in the order they were first seen (as Countly's `list`); keys
/// from before that order was kept follow, sorted.
pub async fn event_keys_in_order(pool: &Pool, app: &App) -> Result<Vec<String>, StoreError> {
    let mut r = Reads::new();
    let meta = keys::meta(&app.id, keys::ORDERED_META);
    let s = r.set(&meta);
    let l = r.list(&keys::meta_order(&meta));
    let a = r.run(pool, keys::route(&app.id)).await?;
    let members: std::collections::BTreeSet<String> = a.set(s).into_iter().collect();
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<String> = a
        .list(l)
        .into_iter()
        .filter(|e| members.contains(e) && seen.insert(e.clone()))
        .collect();
    out.extend(members.into_iter().filter(|e| !seen.contains(e)));
    Ok(out)
}

/// `method=get_events`: the event keys, their segmentation keys and the limits.
pub async fn get_events(
    pool: &Pool,
    app: &App,
    limits: &Limits,
    esc: bool,
) -> Result<Value, StoreError> {
    let list = event_keys_in_order(pool, app).await?;
    if list.is_empty() {
        return Ok(json!({ "limits": limits_json(limits) }));
    }
    let mut r = Reads::new();
    let slots: Vec<Slot> = list
        .iter()
        .map(|e| r.set(&keys::event_segments(&app.id, e)))
        .collect();
    let a = r.run(pool, keys::route(&app.id)).await?;
    let mut segments = Map::new();
    for (e, slot) in list.iter().zip(slots) {
        let segs = a.set(slot);
        if !segs.is_empty() {
            let segs: Vec<Value> = segs.iter().map(|s| Value::from(escape(s, esc))).collect();
            segments.insert(escape(e, esc), Value::Array(segs));
        }
    }
    let mut out = Map::new();
    out.insert("_id".into(), Value::from(app.id.as_str()));
    out.insert(
        "list".into(),
        Value::Array(list.iter().map(|e| Value::from(escape(e, esc))).collect()),
    );
    if !segments.is_empty() {
        out.insert("segments".into(), Value::Object(segments));
    }
    out.insert("limits".into(), limits_json(limits));
    Ok(Value::Object(out))
}

/// An event of `top_events`: its name, and (this period, the one before) of its count,
/// sum and duration.
type Row = (String, (f64, f64), (f64, f64), (f64, f64));

/// `method=top_events`: Countly's top events document for `30days` (the last 30 days
/// against the 30 before) and `today` (today so far against yesterday; Countly's daily
/// job stores yesterday under that name), computed when asked: every event with its
/// count, sum and duration (zero counts included), largest count first, cut to `limit`,
/// and the totals of events, sessions and users of both periods. With `filter`
/// (`count`, `sum`, `duration`) each event carries that figure's change instead, and the
/// answer only the event total. Any other period answers `false`, as in Countly.
pub async fn top_events(
    pool: &Pool,
    q: &Query<'_>,
    period: Option<&str>,
    limit: Option<&str>,
    filter: Option<&str>,
    now: i64,
) -> Result<Value, StoreError> {
    use crate::model::{change, days, num, uniques, Batch};
    let named = match period {
        Some("30days") => "30days",
        Some("today") => "hour",
        _ => return Ok(Value::Bool(false)),
    };
    let span = match crate::period::parse(Some(named), now, q.app.timezone) {
        Ok(s) => s,
        Err(_) => return Ok(Value::Bool(false)),
    };
    let obj = crate::period_obj::render(&span, now, q.app.timezone);
    let list = event_keys_in_order(pool, q.app).await?;
    let months = span.months();
    let mut batch = Batch::new();
    let users = batch.family(&q.app.id, &Family::users(), &months);
    let events: Vec<usize> = list
        .iter()
        .map(|e| batch.family(&q.app.id, &Family::event(e), &months))
        .collect();
    let loaded = batch.run(pool, &q.app.id).await?;
    let d = days(&span);
    let mut rows = Vec::new();
    let (mut tc, mut pc, mut ts, mut ps, mut td, mut pd) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (e, i) in list.iter().zip(events) {
        let l = &loaded[i];
        let fig = |f: &str| (l.sum(&d.current, f), l.sum(&d.previous, f));
        let (c, s, dur) = (fig("c"), fig("s"), fig("dur"));
        tc += c.0;
        pc += c.1;
        ts += s.0;
        ps += s.1;
        td += dur.0;
        pd += dur.1;
        rows.push((escape(e, q.escape), c, s, dur));
    }
    let by = |r: &Row| match filter {
        Some("sum") => r.2 .0,
        Some("duration") => r.3 .0,
        _ => r.1 .0,
    };
    rows.sort_by(|a, b| by(b).total_cmp(&by(a)));
    // JavaScript's slice(0, limit): no limit keeps all, a text that is no number keeps
    // none, a negative one drops that many from the end.
    let keep = match limit.map(str::trim) {
        None => rows.len(),
        Some(l) => match l.parse::<f64>() {
            Ok(n) if n.is_finite() && n >= 0.0 => (n as usize).min(rows.len()),
            Ok(n) if n.is_finite() => rows.len().saturating_sub((-n) as usize),
            _ => 0,
        },
    };
    rows.truncate(keep);
    let head = |data: Vec<Value>| {
        json!({
            "_id": format!("{}_{}", q.app.id, period.unwrap_or_default()),
            "app_id": q.app.id.as_str(),
            "ts": now,
            "period": period.unwrap_or_default(),
            "data": data,
            "totalCount": num(tc),
        })
    };
    if let Some(f) = filter.filter(|f| !f.is_empty()) {
        let name = match f {
            "sum" => "sum",
            "duration" => "duration",
            _ => "count",
        };
        let data = rows
            .iter()
            .map(|(n, c, s, dur)| {
                let (cur, prev) = match name {
                    "sum" => *s,
                    "duration" => *dur,
                    _ => *c,
                };
                let (ch, trend) = change(prev, cur);
                json!({"name": n, name: num(cur), "trend": trend, "change": ch})
            })
            .collect();
        return Ok(head(data));
    }
    let data = rows
        .iter()
        .map(|(n, c, s, dur)| json!({"name": n, "count": num(c.0), "sum": num(s.0), "duration": num(dur.0)}))
        .collect();
    let u = &loaded[users];
    let (users_now, users_before, _) = uniques(u, &span, &obj, "");
    let mut out = head(data);
    out["prevTotalCount"] = num(pc);
    out["totalSum"] = num(ts);
    out["prevTotalSum"] = num(ps);
    out["totalDuration"] = num(td);
    out["prevTotalDuration"] = num(pd);
    out["prevSessionCount"] = num(u.sum(&d.previous, "t"));
    out["totalSessionCount"] = num(u.sum(&d.current, "t"));
    out["prevUsersCount"] = num(users_before);
    out["totalUsersCount"] = num(users_now);
    Ok(out)
}

/// `method=total_users` (Countly's `fetchTotalUsersObj`): devices whose last session
/// began in the period, `[{"_id":"users","u":N}]`, or by a metric's value with
/// `metric` (`devices`, `device_type`, `app_versions`, `os`/`platforms`,
/// `os_versions`/`platform_versions`, `resolutions`, `carriers`, `countries`):
/// `[{"_id": value, "u": N}]`, largest first, `null` for devices without one. As in
/// Countly, only a period that contains today is counted (`[]` otherwise), and nothing
/// counted is `[]`. The count is exact: a scan of the app's device states, bounded by
/// `TALLY_TOTAL_USERS_SCAN` (`Ok(Err(max))` past it).
pub async fn total_users(
    pool: &Pool,
    q: &Query<'_>,
    metric: Option<&str>,
    max_scan: usize,
) -> Result<Result<Value, usize>, StoreError> {
    use tally_model::device::{CITY_SLOT, COUNTRY_SLOT, METRICS};
    if !q.period.range.contains(q.today) {
        return Ok(Ok(json!([])));
    }
    let by = |name: &str| {
        METRICS
            .iter()
            .find(|m| m.name == name)
            .map(|m| (m.slot, m.meta))
    };
    let group = match metric {
        Some("devices") => by("_device"),
        Some("device_type") => by("_device_type"),
        Some("app_versions") => by("_app_version"),
        Some("os" | "platforms") => by("_os"),
        Some("os_versions" | "platform_versions") => by("_os_version"),
        Some("resolutions") => by("_resolution"),
        Some("carriers") => by("_carrier"),
        Some("countries") => Some((COUNTRY_SLOT, "countries")),
        Some("cities") => Some((CITY_SLOT, "cities")),
        _ => None,
    };
    let midnight = |d: NaiveDate| {
        let t = d.and_hms_opt(0, 0, 0).unwrap_or_default();
        chrono::TimeZone::from_local_datetime(&q.app.timezone, &t)
            .earliest()
            .map(|t| t.timestamp())
            .unwrap_or_else(|| t.and_utc().timestamp())
    };
    let from = midnight(q.period.range.from);
    let to = midnight(q.period.range.to + chrono::Duration::days(1));
    let counted = match tally_model::census::last_sessions(
        pool,
        &q.app.id,
        from,
        to,
        group.map(|(slot, _)| slot),
        max_scan,
    )
    .await?
    {
        Ok(c) => c,
        Err(max) => return Ok(Err(max)),
    };
    let Some((_, list)) = group else {
        return Ok(Ok(if counted.total == 0 {
            json!([])
        } else {
            json!([{"_id": "users", "u": counted.total}])
        }));
    };
    let mut r = Reads::new();
    let slot = r.set(&keys::meta(&q.app.id, list));
    let values = r.run(pool, keys::route(&q.app.id)).await?.set(slot);
    let names = tally_model::census::names(&values);
    let mut rows: Vec<(Value, u64)> = counted
        .by_value
        .into_iter()
        .map(|(fp, n)| {
            let name = names
                .get(&fp)
                .map_or(Value::Null, |v| Value::from(escape_meta(v, q.escape)));
            (name, n)
        })
        .collect();
    rows.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| a.0.to_string().cmp(&b.0.to_string()))
    });
    Ok(Ok(Value::Array(
        rows.into_iter()
            .map(|(id, u)| json!({"_id": id, "u": u}))
            .collect(),
    )))
}

/// Minutes `method=live` covers.
pub const LIVE_MINUTES: i64 = 30;

/// `method=live` (Tally's own): the last 30 minutes from the minute rollups: session
/// starts (written by the collector), event occurrences (by the aggregator) and active
/// devices (a HyperLogLog estimate, fed by both) a minute.
pub async fn live(pool: &Pool, app: &App, now_secs: i64) -> Result<String, StoreError> {
    let last = now_secs.div_euclid(60);
    let mut r = Reads::new();
    let slots: Vec<(i64, Slot, Slot)> = (last - LIVE_MINUTES + 1..=last)
        .map(|m| {
            let h = r.hash(&keys::rollup_minute(&app.id, m));
            (m, h, r.pfcount(&keys::active_minute(&app.id, m)))
        })
        .collect();
    let a = r.run(pool, keys::route(&app.id)).await?;
    let mut points = Vec::new();
    let (mut sessions, mut events) = (0i64, 0i64);
    for (m, h, d) in slots {
        let (mut s, mut e) = (0i64, 0i64);
        for (k, v) in a.hash_pairs(h) {
            let n: i64 = v.parse().unwrap_or(0);
            // Session starts, and event counts without an app/server narrowing.
            if k == "sb" {
                s += n;
            } else if k.starts_with("c\u{1f}") && k.ends_with("\u{1f}\u{1f}") {
                e += n;
            }
        }
        sessions += s;
        events += e;
        points.push(json!([m * 60_000, s, e, a.int(d)]));
    }
    Ok(json!({
        "minutes": LIVE_MINUTES,
        "sessions": sessions,
        "events": events,
        "points": points,
        "columns": ["minute_ms", "sessions", "events", "active_devices_estimate"],
    })
    .to_string())
}

#[cfg(test)]
mod tests {
    use super::{add_month, add_year, refresh_unique, Totals};
    use crate::shape::Tree;
    use serde_json::{json, Value};

    type Fields = [(&'static str, &'static str)];

    fn answer(year: &Fields, october: &Fields, november: &Fields) -> String {
        let mut tree = Tree::new();
        let mut totals = Totals::default();
        add_year(&mut tree, "2026", year);
        add_month(&mut tree, ["2026", "10"], october, &mut totals);
        add_month(&mut tree, ["2026", "11"], november, &mut totals);
        totals.into_tree(&mut tree, &["2026"]);
        tree.render(None, false)
    }

    #[test]
    fn month_and_year_totals_are_the_sums_of_their_days() {
        let year: &Fields = &[
            ("u", "4"),
            ("10.u", "3"),
            ("11.u", "2"),
            ("w45.u", "2"),
            ("w45.f.0", "1"),
            ("Android.u", "4"),
            ("11.Android.u", "2"),
            ("l.1", "2"),
            ("11.l.1", "2"),
        ];
        let october: &Fields = &[
            ("3.t", "2"),
            ("4.t", "1"),
            ("3.n", "1"),
            ("3.u", "2"),
            ("3.Android.t", "3"),
            ("3.f.0", "3"),
            ("3.ds.2", "-1"),
            ("3.d", "1.5"),
        ];
        let november: &Fields = &[
            ("2.t", "2"),
            ("2.u", "2"),
            ("2.Android.t", "2"),
            ("2.ds.2", "1"),
            ("2.d", "2"),
        ];
        let got = answer(year, october, november);
        let v: serde_json::Value = serde_json::from_str(&got).unwrap_or_default();
        let y = &v["2026"];
        // The year: totals summed over both months, uniques and loyalty as stored; the
        // duration range's -1 in October and +1 in November make no total, as a stored
        // zero would not.
        assert_eq!(
            (&y["t"], &y["n"], &y["u"], &y["d"]),
            (&json!(5), &json!(1), &json!(4), &json!(3.5)),
            "{got}"
        );
        assert_eq!(y["Android"], json!({"t": 5, "u": 4}), "{got}");
        assert_eq!(
            (&y["f"], &y["l"], &y["ds"]),
            (&json!({"0": 3}), &json!({"1": 2}), &Value::Null),
            "{got}"
        );
        assert_eq!(y["w45"], json!({"f": {"0": 1}, "u": 2}), "{got}");
        // October: its days and its totals.
        assert_eq!(
            y["10"],
            json!({
                "3": {"Android": {"t": 3}, "d": 1.5, "ds": {"2": -1}, "f": {"0": 3}, "n": 1, "t": 2, "u": 2},
                "4": {"t": 1},
                "Android": {"t": 3}, "d": 1.5, "ds": {"2": -1}, "f": {"0": 3}, "n": 1, "t": 3, "u": 3
            }),
            "{got}"
        );
        // November: its days and its totals.
        assert_eq!(
            y["11"],
            json!({
                "2": {"Android": {"t": 2}, "d": 2, "ds": {"2": 1}, "t": 2, "u": 2},
                "Android": {"t": 2, "u": 2}, "d": 2, "ds": {"2": 1}, "l": {"1": 2}, "t": 2, "u": 2
            }),
            "{got}"
        );

        // A year hash written before these totals were summed holds them too: the answer
        // is the same, not doubled.
        let mut old = year.to_vec();
        old.extend([
            ("t", "5"),
            ("10.t", "3"),
            ("11.t", "2"),
            ("n", "1"),
            ("10.n", "1"),
            ("Android.t", "5"),
            ("10.Android.t", "3"),
            ("11.Android.t", "2"),
            ("f.0", "3"),
            ("10.f.0", "3"),
            ("d", "3.5"),
            ("10.d", "1.5"),
            ("11.d", "2"),
            ("10.ds.2", "-1"),
            ("11.ds.2", "1"),
        ]);
        assert_eq!(answer(&old, october, november), got);
    }

    #[test]
    fn refresh_keeps_year_and_this_months_uniques() {
        for keep in ["u", "l.2", "11.u", "11.l.0"] {
            assert!(refresh_unique(keep, 11), "{keep}");
        }
        // No country's or metric value's unique, no week, no other month.
        for drop in [
            "t",
            "10.u",
            "w47.u",
            "11.t",
            "f.0",
            "Android.u",
            "11.Android.u",
            "TR.u",
            "10.l.2",
        ] {
            assert!(!refresh_unique(drop, 11), "{drop}");
        }
    }
}
