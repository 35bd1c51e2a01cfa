//! Countly's `/o/analytics/*`, the figures its own dashboard reads (dashboard, countries,
//! sessions, metric, tops, loyalty, frequency, durations, events) and `method=all_apps`,
//! computed from the counters with Countly's dashboard model ([`crate::model`]): totals
//! with their change against the previous period, unique users as Countly estimates
//! them, top-three bars, sub-period series.

use crate::methods::Query;
use crate::model::{days, figure, fixed1, num, time_string, uniques, Batch, Loaded};
use crate::period::{self, Kind, Period};
use crate::period_obj;
use crate::shape::escape;
use chrono::{Datelike, NaiveDate, TimeZone, Timelike};
use serde_json::{json, Map, Value};
use tally_model::keys::Family;
use tally_model::StoreError;
use tally_redis::Pool;

/// The routes under `/o/analytics/`.
pub const ACTIONS: [&str; 9] = [
    "dashboard",
    "countries",
    "sessions",
    "metric",
    "tops",
    "loyalty",
    "frequency",
    "durations",
    "events",
];

/// Countly's answer to another path, spelled as it spells it.
pub const INVALID_PATH: &str = "Invalid path, must be one of /dashboard,  /countries, /sessions, /metric, /tops, /loyalty, /frequency, /durations, /events";

/// A request's failure that is the caller's: a 400 with Countly's message.
pub struct Refused(pub String);

/// What an analytics answer needs besides the query.
pub struct Ask<'a> {
    pub q: &'a Query<'a>,
    pub now: i64,
    pub params: &'a std::collections::HashMap<String, String>,
}

impl Ask<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    fn period(&self, text: &str) -> Period {
        period::parse(Some(text), self.now, self.q.app.timezone).unwrap_or(self.q.period)
    }
}

/// One period's loaded families and what Countly derives from the period.
struct View {
    span: Period,
    obj: Value,
    current: Vec<NaiveDate>,
    previous: Vec<NaiveDate>,
}

impl View {
    fn new(span: Period, now: i64, tz: chrono_tz::Tz) -> View {
        let obj = period_obj::render(&span, now, tz);
        let d = days(&span);
        View {
            span,
            obj,
            current: d.current,
            previous: d.previous,
        }
    }

    fn one_day(&self) -> bool {
        matches!(self.span.kind, Kind::Today | Kind::Yesterday | Kind::OneDay)
            || self.current.len() == 1
    }

    /// A summed counter of this period and the one before, as Countly's dashboard reads
    /// it: a day's, this month's or this year's (its loaded days) for those periods, the
    /// days otherwise.
    fn total(&self, l: &Loaded, field: &str) -> (f64, f64) {
        let months_of = |d: NaiveDate, whole_year: bool| -> Vec<NaiveDate> {
            let first = if whole_year {
                NaiveDate::from_ymd_opt(d.year(), 1, 1)
            } else {
                d.with_day(1)
            }
            .unwrap_or(d);
            let last_month = d.with_day(1).unwrap_or(d);
            let end = last_month
                .checked_add_months(chrono::Months::new(1))
                .map(|n| n - chrono::Duration::days(1))
                .unwrap_or(d);
            first.iter_days().take_while(|x| *x <= end).collect()
        };
        match self.span.kind {
            Kind::ThisMonth | Kind::PrevMonth => (
                l.sum(&months_of(self.span.range.from, false), field),
                l.sum(&months_of(self.span.previous.from, false), field),
            ),
            Kind::ThisYear => (
                l.sum(&months_of(self.span.range.to, true), field),
                l.sum(&months_of(self.span.previous.to, true), field),
            ),
            _ => (l.sum(&self.current, field), l.sum(&self.previous, field)),
        }
    }

    /// Countly's `getDateRange` label of the period.
    fn label(&self, now: i64, tz: chrono_tz::Tz) -> String {
        let d = |x: NaiveDate| format!("{} {}", x.day(), month_name(x.month()));
        match self.span.kind {
            Kind::Today => {
                let t = tz
                    .timestamp_opt(now, 0)
                    .single()
                    .map(|t| format!("{:02}:{:02}", t.hour(), t.minute()))
                    .unwrap_or_default();
                format!("00:00 - {t}")
            }
            Kind::Yesterday | Kind::OneDay => format!("{}, 00:00 - 23:59", d(self.span.range.from)),
            Kind::ThisYear => format!(
                "{} - {}",
                month_name(self.span.range.from.month()),
                month_name(self.span.range.to.month())
            ),
            _ => format!("{} - {}", d(self.span.range.from), d(self.span.range.to)),
        }
    }
}

fn month_name(m: u32) -> &'static str {
    const NAMES: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    NAMES[(m as usize + 11) % 12]
}

/// The families a block of the dashboard reads, in one round trip.
async fn load(
    pool: &Pool,
    q: &Query<'_>,
    v: &View,
    families: &[Family],
    hours: bool,
) -> Result<Vec<Loaded>, StoreError> {
    let months = v.span.months();
    let mut b = Batch::new();
    for f in families {
        let i = b.family(&q.app.id, f, &months);
        if hours && v.one_day() && *f == Family::users() {
            b.hours(&q.app.id, f, i, &v.current);
        }
    }
    b.run(pool, &q.app.id).await
}

/// Countly's session figures of a block (`getSessionData`).
fn session_data(v: &View, users: &Loaded) -> Map<String, Value> {
    let (t, pt) = v.total(users, "t");
    let (n, pn) = v.total(users, "n");
    let (d, pd) = v.total(users, "d");
    let (e, pe) = v.total(users, "e");
    let (mut u, mut pu, estimate) = uniques(users, &v.span, &v.obj, "");
    // Countly's clamps: no fewer users than new ones, no more than sessions.
    u = u.max(n).min(t.max(n));
    pu = pu.max(pn).min(pt.max(pn));
    let mut out = Map::new();
    out.insert("total_sessions".into(), figure(t, pt));
    out.insert("new_users".into(), figure(n, pn));
    let mut users_fig = figure(u, pu);
    users_fig["is_estimate"] = estimate.into();
    out.insert("total_users".into(), users_fig);
    let mut time = figure(d, pd);
    time["total"] = time_string(d / 60.0).into();
    out.insert("total_time".into(), time);
    let per = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let (avg, pavg) = (per(d / 60.0, t), per(pd / 60.0, pt));
    let mut avg_time = figure(avg, pavg);
    avg_time["total"] = time_string(avg).into();
    out.insert("avg_time".into(), avg_time);
    let (req, preq) = (per(e, u), per(pe, pu));
    let mut avg_req = figure(req, preq);
    avg_req["total"] = fixed1(req).into();
    out.insert("avg_requests".into(), avg_req);
    out
}

/// Countly's bars: the top three of rows `(name, value)` with their percent of all rows
/// (one decimal, the rounding error put on the first or last), largest first.
fn bars(mut rows: Vec<(String, f64)>) -> Value {
    rows.retain(|(_, v)| *v > 0.0);
    let all: f64 = rows.iter().map(|(_, v)| v).sum();
    if all <= 0.0 {
        return json!([]);
    }
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut pct: Vec<f64> = rows
        .iter()
        .map(|(_, v)| (v / all * 1000.0).round() / 10.0)
        .collect();
    let sum: f64 = pct.iter().sum();
    let delta = ((100.0 - sum) * 10.0).round() / 10.0;
    if delta != 0.0 {
        let at = if delta > 0.0 { 0 } else { pct.len() - 1 };
        pct[at] = ((pct[at] + delta) * 10.0).round() / 10.0;
    }
    Value::Array(
        rows.into_iter()
            .zip(pct)
            .take(3)
            .map(|((name, value), percent)| json!({"name": name, "value": num(value), "percent": num(percent)}))
            .collect(),
    )
}

/// The values of a metric over the period, each with its summed `field`.
fn metric_rows(v: &View, l: &Loaded, field: &str, esc: bool) -> Vec<(String, f64)> {
    l.values(&v.current, field)
        .into_iter()
        .map(|value| {
            let total = l.sum(&v.current, &format!("{value}.{field}"));
            (escape(&value, esc), total)
        })
        .collect()
}

/// The top three days (or, for one day, hours) by sessions, named as Countly names them.
fn top_buckets(v: &View, users: &Loaded) -> Value {
    let rows: Vec<(String, f64)> = if v.one_day() {
        let day = v.current[0];
        (0..24)
            .map(|h| (format!("{h}:00"), users.hour(day, h, "t")))
            .collect()
    } else {
        v.current
            .iter()
            .map(|d| {
                (
                    format!("{} {}", d.day(), month_name(d.month())),
                    users.day(*d, "t"),
                )
            })
            .collect()
    };
    bars(rows)
}

/// The countries of a block: `{country, code, t, u, n}`, the ten with most users, then by
/// new users (Countly's `getLocationData({maxCountries: 10, sort: "new"})`).
fn country_rows(v: &View, users: &Loaded) -> Value {
    let codes = users.values(&v.current, "t");
    let mut rows: Vec<(String, String, f64, f64, f64)> = codes
        .into_iter()
        .filter(|c| c.len() == 2 || c == "Unknown")
        .map(|code| {
            let prefix = format!("{code}.");
            let t = users.sum(&v.current, &format!("{code}.t"));
            let n = users.sum(&v.current, &format!("{code}.n"));
            let (u, _, _) = uniques(users, &v.span, &v.obj, &prefix);
            let u = u.max(n).min(t.max(n));
            (country_name(&code), code.to_ascii_lowercase(), t, u, n)
        })
        .filter(|r| r.2 > 0.0)
        .collect();
    rows.sort_by(|a, b| b.3.total_cmp(&a.3));
    rows.truncate(10);
    rows.sort_by(|a, b| b.4.total_cmp(&a.4));
    Value::Array(
        rows.into_iter()
            .map(|(country, code, t, u, n)| {
                json!({"country": country, "code": code, "t": num(t), "u": num(u), "n": num(n)})
            })
            .collect(),
    )
}

/// A country's English name (ISO 3166-1), `Unknown` for an unknown code.
pub fn country_name(code: &str) -> String {
    isocountry::CountryCode::for_alpha2_caseless(code)
        .map(|c| c.name().to_string())
        .unwrap_or_else(|_| "Unknown".into())
}

/// The sub-periods of a view: hours of one day, the months of a year, else days; each
/// with its Countly id.
enum Buckets {
    Hours(NaiveDate),
    Months(i32, u32),
    Days,
}

fn buckets(v: &View) -> Buckets {
    match v.span.kind {
        _ if v.one_day() => Buckets::Hours(v.current[0]),
        Kind::ThisYear => Buckets::Months(v.span.range.to.year(), v.span.range.to.month()),
        _ => Buckets::Days,
    }
}

/// Rows `{_id, <field>: value, ...}` of a family over the sub-periods (Countly's
/// `getSubperiodData`): no estimates, no change; missing values are 0.
fn series(v: &View, l: &Loaded, fields: &[&str], users_like: bool) -> Value {
    let row = |id: String, get: &dyn Fn(&str) -> f64| {
        let mut o = Map::new();
        o.insert("_id".into(), id.into());
        for f in fields {
            o.insert((*f).into(), num(get(f)));
        }
        Value::Object(o)
    };
    let rows: Vec<Value> = match buckets(v) {
        Buckets::Hours(d) => (0..24)
            .map(|h| {
                row(
                    format!("{}-{}-{} {h}:00", d.year(), d.month(), d.day()),
                    &|f| l.hour(d, h, f),
                )
            })
            .collect(),
        Buckets::Months(y, last) => (1..=last)
            .map(|m| {
                let month: Vec<NaiveDate> = v
                    .current
                    .iter()
                    .copied()
                    .filter(|d| d.month() == m)
                    .collect();
                row(format!("{y}-{m}"), &|f| {
                    if users_like && f == "u" {
                        l.month_unique(y, m, "")
                    } else {
                        l.sum(&month, f)
                    }
                })
            })
            .collect(),
        Buckets::Days => v
            .current
            .iter()
            .map(|d| {
                row(format!("{}-{}-{}", d.year(), d.month(), d.day()), &|f| {
                    l.day(*d, f)
                })
            })
            .collect(),
    };
    Value::Array(rows)
}

/// Which family and meta list a metric name reads (Countly's `metricToCollection`).
fn metric_family(metric: &str) -> Option<(Family, &'static str)> {
    Some(match metric {
        "countries" | "locations" => (Family::users(), "countries"),
        "app_versions" => (Family::metric("device_details"), "app_versions"),
        "os" | "platforms" => (Family::metric("device_details"), "os"),
        "os_versions" | "platform_version" => (Family::metric("device_details"), "os_versions"),
        "resolutions" => (Family::metric("device_details"), "resolutions"),
        "device_type" => (Family::metric("device_details"), "device_type"),
        "devices" => (Family::metric("devices"), "devices"),
        "manufacturers" => (Family::metric("devices"), "manufacturers"),
        "carriers" => (Family::metric("carriers"), "carriers"),
        "cities" => (Family::metric("cities"), "cities"),
        "density" => (Family::metric("density"), "density"),
        "langs" => (Family::metric("langs"), "langs"),
        _ => return None,
    })
}

/// The values a metric has in its meta list.
async fn meta_values(pool: &Pool, q: &Query<'_>, list: &str) -> Result<Vec<String>, StoreError> {
    let mut r = tally_model::counters::Reads::new();
    let s = r.set(&tally_model::keys::meta(&q.app.id, list));
    Ok(r.run(pool, tally_model::keys::route(&q.app.id))
        .await?
        .set(s))
}

/// `/o/analytics/<action>`.
pub async fn answer(
    pool: &Pool,
    ask: &Ask<'_>,
    action: &str,
) -> Result<Result<Value, Refused>, StoreError> {
    let q = ask.q;
    let tz = q.app.timezone;
    let esc = q.escape;
    let now = ask.now;
    let view = View::new(q.period, now, tz);
    Ok(Ok(match action {
        "dashboard" => {
            let named = ask.param("period").unwrap_or("30days");
            let blocks: Vec<(String, Period)> =
                if named == "30days" || ask.param("period").is_none() {
                    vec![
                        ("30days".into(), ask.period("30days")),
                        ("7days".into(), ask.period("7days")),
                        ("today".into(), ask.period("hour")),
                    ]
                } else {
                    vec![(named.to_string(), q.period)]
                };
            let mut out = Map::new();
            for (name, span) in blocks {
                let v = View::new(span, now, tz);
                let fams = [
                    Family::users(),
                    Family::metric("device_details"),
                    Family::metric("carriers"),
                ];
                let l = load(pool, q, &v, &fams, true).await?;
                let (users, details, carriers) = (&l[0], &l[1], &l[2]);
                let os = meta_values(pool, q, "os").await?;
                let os_rows: Vec<(String, f64)> = os
                    .iter()
                    .map(|o| (escape(o, esc), details.sum(&v.current, &format!("{o}.t"))))
                    .collect();
                let res = meta_values(pool, q, "resolutions").await?;
                let res_rows: Vec<(String, f64)> = res
                    .iter()
                    .map(|r| (escape(r, esc), details.sum(&v.current, &format!("{r}.t"))))
                    .collect();
                out.insert(
                    name,
                    json!({
                        "dashboard": Value::Object(session_data(&v, users)),
                        "top": {
                            "platforms": bars(os_rows),
                            "resolutions": bars(res_rows),
                            "carriers": bars(metric_rows(&v, carriers, "t", esc)),
                            "users": top_buckets(&v, users),
                        },
                        "period": v.label(now, tz),
                    }),
                );
            }
            Value::Object(out)
        }
        "countries" => {
            let mut out = Map::new();
            for (name, text) in [("30days", "30days"), ("7days", "7days"), ("today", "hour")] {
                let v = View::new(ask.period(text), now, tz);
                let l = load(pool, q, &v, &[Family::users()], false).await?;
                out.insert(name.into(), country_rows(&v, &l[0]));
            }
            Value::Object(out)
        }
        "sessions" => {
            let l = load(pool, q, &view, &[Family::users()], true).await?;
            series(&view, &l[0], &["t", "n", "u", "d", "e"], true)
        }
        "metric" => {
            let Some(metric) = ask.param("metric") else {
                return Ok(Err(Refused("Must provide metric".into())));
            };
            let Some((family, list)) = metric_family(metric) else {
                return Ok(Ok(json!([])));
            };
            // As Countly, the values are those of the meta list named like the metric:
            // `platforms` and `locations` read nothing.
            if list != metric {
                return Ok(Ok(json!([])));
            }
            let l = load(pool, q, &view, &[family], false).await?;
            let values = meta_values(pool, q, list).await?;
            let mut rows: Vec<(String, f64, f64, f64)> = values
                .iter()
                .map(|val| {
                    let t = l[0].sum(&view.current, &format!("{val}.t"));
                    let n = l[0].sum(&view.current, &format!("{val}.n"));
                    let (u, _, _) = uniques(&l[0], &view.span, &view.obj, &format!("{val}."));
                    (escape(val, esc), t, n, u.max(n).min(t.max(n)))
                })
                .filter(|r| r.1 > 0.0 || r.3 > 0.0)
                .collect();
            rows.sort_by(|a, b| b.3.total_cmp(&a.3).then_with(|| a.0.cmp(&b.0)));
            Value::Array(
                rows.into_iter()
                    .map(|(id, t, n, u)| json!({"_id": id, "t": num(t), "n": num(n), "u": num(u)}))
                    .collect(),
            )
        }
        "tops" => {
            if let Some(m) = ask.param("metric") {
                top_of(pool, q, &view, m).await?
            } else if let Some(list) = ask.param("metrics") {
                let names: Vec<String> = serde_json::from_str(list).unwrap_or_default();
                let mut out = Map::new();
                for n in names {
                    let v = top_of(pool, q, &view, &n).await?;
                    out.insert(escape(&n, esc), v);
                }
                Value::Object(out)
            } else {
                json!({
                    "platforms": top_of(pool, q, &view, "os").await?,
                    "resolutions": top_of(pool, q, &view, "resolutions").await?,
                    "carriers": top_of(pool, q, &view, "carriers").await?,
                    "countries": top_of(pool, q, &view, "countries").await?,
                })
            }
        }
        "loyalty" | "frequency" | "durations" => {
            let (key, list) = match action {
                "loyalty" => ("l", "l-ranges"),
                "frequency" => ("f", "f-ranges"),
                _ => ("ds", "d-ranges"),
            };
            let l = load(pool, q, &view, &[Family::users()], false).await?;
            let ranges = meta_values(pool, q, list).await?;
            let mut rows: Vec<(String, f64)> = ranges
                .iter()
                .map(|r| {
                    let field = format!("{key}.{r}");
                    let t = if key == "l" && view.span.kind == Kind::Days && view.current.len() > 1
                    {
                        // Loyalty is stored where a session is unique, like users: the
                        // period's buckets, bounded by the check buckets.
                        uniques_field(&l[0], &view, &field)
                    } else {
                        view.total(&l[0], &field).0
                    };
                    (r.clone(), t)
                })
                .filter(|(_, t)| *t > 0.0)
                .collect();
            rows.sort_by(|a, b| b.1.total_cmp(&a.1));
            let all: f64 = rows.iter().map(|(_, t)| t).sum();
            Value::Array(
                rows.into_iter()
                    .map(|(r, t)| {
                        json!({key: r, "t": num(t), "percent": fixed1(if all > 0.0 { t / all * 100.0 } else { 0.0 })})
                    })
                    .collect(),
            )
        }
        "events" => {
            let seg = ask.param("segmentation").filter(|s| *s != "no-segment");
            let keys: Vec<String> = if let Some(e) = ask.param("event") {
                vec![e.to_string()]
            } else if let Some(list) = ask.param("events") {
                match serde_json::from_str::<Value>(list) {
                    Ok(Value::Array(a)) => a
                        .into_iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect(),
                    Ok(Value::String(s)) => vec![s],
                    _ => {
                        return Ok(Err(Refused(
                            "Must provide valid array with event keys as events param.".into(),
                        )))
                    }
                }
            } else {
                return Ok(Err(Refused("Must provide event or events".into())));
            };
            let mut out = Map::new();
            for key in &keys {
                let rows = match seg {
                    None => {
                        let mut b = Batch::new();
                        let fam = Family::event(key);
                        let i = b.family(&q.app.id, &fam, &view.span.months());
                        if view.one_day() {
                            b.hours(&q.app.id, &fam, i, &view.current);
                        }
                        let l = b.run(pool, &q.app.id).await?;
                        series(&view, &l[0], &["c", "s", "dur"], false)
                    }
                    Some(s) => {
                        let l = load(pool, q, &view, &[Family::segment(key, s)], false).await?;
                        let mut rows: Vec<(String, f64, f64, f64)> = l[0]
                            .values(&view.current, "c")
                            .into_iter()
                            .map(|val| {
                                let f = |x: &str| l[0].sum(&view.current, &format!("{val}.{x}"));
                                (escape(&val, esc), f("c"), f("s"), f("dur"))
                            })
                            .collect();
                        rows.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                        Value::Array(
                            rows.into_iter()
                                .map(|(id, c, s, dur)| json!({"_id": id, "c": num(c), "s": num(s), "dur": num(dur)}))
                                .collect(),
                        )
                    }
                };
                out.insert(escape(key, esc), rows);
            }
            if ask.param("event").is_some() {
                out.into_iter().next().map(|(_, v)| v).unwrap_or(json!([]))
            } else {
                Value::Object(out)
            }
        }
        _ => return Ok(Err(Refused(INVALID_PATH.into()))),
    }))
}

/// The top three values of a metric by sessions (`/o/analytics/tops`).
async fn top_of(
    pool: &Pool,
    q: &Query<'_>,
    view: &View,
    metric: &str,
) -> Result<Value, StoreError> {
    let Some((family, list)) = metric_family(metric) else {
        return Ok(json!([]));
    };
    let l = load(pool, q, view, &[family], false).await?;
    let values = meta_values(pool, q, list).await?;
    let rows: Vec<(String, f64)> = values
        .iter()
        .map(|val| {
            let name = if list == "countries" {
                country_name(val)
            } else {
                escape(val, q.escape)
            };
            (name, l[0].sum(&view.current, &format!("{val}.t")))
        })
        .collect();
    Ok(bars(rows))
}

/// A unique-type counter (`l.2`) over a number of days: Countly's bucket estimate.
fn uniques_field(l: &Loaded, v: &View, field: &str) -> f64 {
    let keys = |k: &str| -> Vec<String> {
        v.obj[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let sum = |k: &str| -> f64 { keys(k).iter().map(|b| l.bucket_field(b, field)).sum() };
    sum("uniquePeriodArr").min(sum("uniquePeriodCheckArr"))
}

/// `method=all_apps`: for each app the key may read, Countly's summary (sessions, users,
/// new users, time spent and its average, with their change) and its charts, one point a
/// sub-period.
pub async fn all_apps(
    pool: &Pool,
    apps: &[std::sync::Arc<tally_model::apps::App>],
    period_text: Option<&str>,
    now: i64,
    (esc, hourly_days): (bool, i64),
) -> Result<Value, tally_service::ApiError> {
    let mut out = Vec::with_capacity(apps.len());
    for app in apps {
        let tz = app.timezone;
        // Each app's days in its own timezone.
        let span = period::parse(period_text, now, tz)?;
        let q = Query::new(app, span, now, esc, hourly_days);
        let v = View::new(span, now, tz);
        let l = load(pool, &q, &v, &[Family::users()], true).await?;
        let s = session_data(&v, &l[0]);
        let rows = series(&v, &l[0], &["t", "n", "u", "d", "e"], true);
        let points = |f: &dyn Fn(&Value) -> Value| -> Value {
            Value::Array(
                rows.as_array()
                    .map(|r| {
                        r.iter()
                            .enumerate()
                            .map(|(i, row)| json!([i, f(row)]))
                            .collect()
                    })
                    .unwrap_or_default(),
            )
        };
        let x = |row: &Value, k: &str| row[k].as_f64().unwrap_or(0.0);
        let ratio = |a: f64, b: f64| {
            if b > 0.0 {
                json!(fixed1(a / b))
            } else {
                json!(0)
            }
        };
        out.push(json!({
            "_id": app.id.as_str(),
            "name": escape(&app.name, esc),
            "sessions": s["total_sessions"],
            "users": s["total_users"],
            "newusers": s["new_users"],
            "duration": s["total_time"],
            "avgduration": s["avg_time"],
            "charts": {
                "total-users": points(&|r| num(x(r, "u"))),
                "new-users": points(&|r| num(x(r, "n"))),
                "total-sessions": points(&|r| num(x(r, "t"))),
                "time-spent": points(&|r| ratio(x(r, "d") / 60.0, x(r, "t"))),
                "total-time-spent": points(&|r| json!(fixed1(x(r, "d") / 60.0))),
                "avg-events-served": points(&|r| ratio(x(r, "e"), x(r, "u"))),
            },
        }));
    }
    Ok(Value::Array(out))
}
