//! The stream consumer: reads every app's raw stream through one consumer group, writes
//! rollups, and acknowledges.
//!
//! # Exactly once
//!
//! For each batch the rollup increments and the `XACK` of the batch's entries go in one
//! `MULTI`/`EXEC` (one app's keys share a slot, so this holds on a cluster too). A crash
//! before `EXEC` leaves the entries pending, and they are read again (by this consumer
//! after a restart, reading its own pending entries first, or by another after
//! `TALLY_AGG_CLAIM_IDLE_MS`, with `XAUTOCLAIM`); a crash after it leaves them acknowledged.
//! Either way an entry counts once. An aggregator that takes over entries bumps the app's
//! epoch key, which every consumer WATCHes before it reads: a consumer that was only slow,
//! not dead, then fails its `EXEC` and writes nothing for entries that are no longer its.
//!
//! Every step runs on a connection checked out of the pool for that step alone, so its
//! `WATCH` and blocking read are never shared with requests. On standalone Redis one step
//! reads every app's stream at once (blocking until entries arrive). On a Redis Cluster a
//! command may not span slots, so each app's stream is read by its own step on its own
//! node, without blocking, and an idle round waits `TALLY_AGG_BLOCK_MS` (at most 250 ms).

use crate::realtime;
use crate::rollup::{rollup, Entry, Retention, Writes};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use redis::Value;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_model::apps::{self, App};
use tally_model::keys::{self, AppId};
use tally_redis::resp::Node;
use tally_redis::{Conn, Pool};
use tally_service::Shared;

/// The consumer group every aggregator shares.
pub const GROUP: &str = "tally-aggregator";

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Entries read per batch.
    pub batch: usize,
    /// How long a read blocks waiting for new entries.
    pub block: Duration,
    /// Pending entries idle this long are taken over from their (presumed dead) consumer.
    pub claim_idle: Duration,
    pub retention: Retention,
}

/// What `/metrics` and `/ready` show.
#[derive(Default, Debug)]
pub struct AggregatorStats {
    pub processed: Counter,
    pub batches: Counter,
    pub aborted: Counter,
    pub claimed: Counter,
    pub errors: Counter,
    /// Entries not yet delivered to any consumer, over all apps.
    pub lag: Gauge,
    /// Entries delivered but not yet acknowledged.
    pub pending: Gauge,
}

impl AggregatorStats {
    /// Shows the counters on `/metrics` (counters get their `_total` suffix there).
    pub fn register(&self, reg: &mut Registry) {
        reg.register(
            "tally_aggregator_lag",
            "Stream entries not yet delivered to an aggregator",
            self.lag.clone(),
        );
        reg.register(
            "tally_aggregator_pending",
            "Stream entries delivered but not yet rolled up",
            self.pending.clone(),
        );
        let counters = [
            (
                "tally_aggregator_processed",
                "Stream entries rolled up",
                &self.processed,
            ),
            (
                "tally_aggregator_batches",
                "Rollup transactions committed",
                &self.batches,
            ),
            (
                "tally_aggregator_aborted",
                "Rollup transactions aborted after a takeover",
                &self.aborted,
            ),
            (
                "tally_aggregator_claimed",
                "Entries taken over from idle consumers",
                &self.claimed,
            ),
            (
                "tally_aggregator_errors",
                "Failed aggregator steps (their entries stay pending)",
                &self.errors,
            ),
        ];
        for (name, help, c) in counters {
            reg.register(name, help, c.clone());
        }
    }
}

fn consumer_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "tally".into());
    format!("{host}-{}-{}", std::process::id(), keys::random_hex(3))
}

/// Runs the consumer until the task is dropped.
pub async fn run(shared: Shared, cfg: ConsumerConfig, stats: Arc<AggregatorStats>) {
    // Its own pool, opened on its own runtime ([`Pool::fresh`]); the shared one still
    // serves if that cannot be built (it can only fail as the shared one would have).
    let pool = shared.pool.fresh().unwrap_or_else(|_| shared.pool.clone());
    let me = consumer_name();
    // A blocking read must end well before the connection's own response timeout.
    let block = cfg.block.min(pool.timeout() / 4);
    let mut apps: HashMap<AppId, Arc<App>> = HashMap::new();
    let mut last_refresh: Option<Instant> = None;
    let mut last_claim = Instant::now();
    let mut recovering = true;
    loop {
        if last_refresh.is_none_or(|t| t.elapsed() > Duration::from_secs(2)) {
            match refresh(&pool, &mut apps, &stats, &shared).await {
                Ok(()) => last_refresh = Some(Instant::now()),
                Err(e) => {
                    stats.errors.inc_by(1);
                    tracing::warn!(error = %e, "aggregator: listing apps failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
        }
        if apps.is_empty() {
            tokio::time::sleep(block.min(Duration::from_millis(500))).await;
            continue;
        }
        if last_claim.elapsed() > cfg.claim_idle / 2 {
            last_claim = Instant::now();
            match claim(&pool, &apps, &me, &cfg, &stats).await {
                Ok(n) if n > 0 => recovering = true,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "aggregator: claiming idle entries failed"),
            }
        }
        // One step over every app, or on a cluster one non-blocking step per app.
        let all: Vec<&Arc<App>> = apps.values().collect();
        let groups: Vec<Vec<&Arc<App>>> = if pool.is_cluster() {
            all.into_iter().map(|a| vec![a]).collect()
        } else {
            vec![all]
        };
        let blocking = !recovering && !pool.is_cluster();
        let mut idle = true;
        let mut failed = false;
        let now = shared.clock.now_secs();
        for group in &groups {
            match step(
                &pool,
                group,
                &me,
                &cfg,
                recovering,
                blocking.then_some(block),
                now,
            )
            .await
            {
                Ok(Step::Idle) => {}
                Ok(Step::Done(n)) => {
                    idle = false;
                    stats.processed.inc_by(n as u64);
                    stats.batches.inc_by(1);
                }
                Ok(Step::Aborted) => {
                    idle = false;
                    failed = true;
                    stats.aborted.inc_by(1);
                }
                Err(e) => {
                    failed = true;
                    stats.errors.inc_by(1);
                    tracing::warn!(error = %e, "aggregator: batch failed; its entries stay pending");
                }
            }
        }
        if failed {
            // A deleted stream loses its group: find the apps again.
            last_refresh = None;
            recovering = true;
            tokio::time::sleep(Duration::from_millis(200)).await;
        } else if idle {
            recovering = false;
            if !blocking {
                tokio::time::sleep(block.min(Duration::from_millis(250))).await;
            }
        }
    }
}

enum Step {
    Idle,
    Done(usize),
    Aborted,
}

type BoxErr = Box<dyn std::error::Error + Send + Sync>;

/// Each app's realtime reports, with parsed filters.
type Reports = HashMap<AppId, Vec<(realtime::Report, Option<crate::filter::Expr>)>>;

/// Finds the apps, makes sure each stream has the group, and reads the lag.
async fn refresh(
    pool: &Pool,
    apps: &mut HashMap<AppId, Arc<App>>,
    stats: &AggregatorStats,
    shared: &Shared,
) -> Result<(), BoxErr> {
    let ids = apps::list(pool).await?;
    apps.retain(|id, _| ids.contains(id));
    for id in ids {
        if let std::collections::hash_map::Entry::Vacant(slot) = apps.entry(id) {
            if let Some(app) = apps::by_id(pool, slot.key()).await? {
                slot.insert(Arc::new(app));
            }
        }
    }
    let (mut lag, mut pending) = (0u64, 0u64);
    for id in apps.keys() {
        let stream = keys::stream(id);
        let mut create = redis::pipe();
        create
            .cmd("XGROUP")
            .arg("CREATE")
            .arg(&stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM");
        match pool.run::<()>(keys::route(id), &create).await {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e.into()),
        }
        let mut info = redis::pipe();
        info.cmd("XINFO").arg("GROUPS").arg(&stream);
        let (groups,): (Vec<HashMap<String, Value>>,) = pool.run(keys::route(id), &info).await?;
        for g in groups
            .iter()
            .filter(|g| g.get("name").and_then(text).as_deref() == Some(GROUP))
        {
            lag += g.get("lag").and_then(int).unwrap_or(0);
            pending += g.get("pending").and_then(int).unwrap_or(0);
        }
    }
    stats.lag.set(i64::try_from(lag).unwrap_or(i64::MAX));
    stats
        .pending
        .set(i64::try_from(pending).unwrap_or(i64::MAX));
    shared.backlog.store(lag + pending, Ordering::Relaxed);
    Ok(())
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

/// Takes over entries another consumer left pending too long; bumps the app's epoch so
/// that consumer, if it was only slow, cannot acknowledge them as well.
async fn claim(
    pool: &Pool,
    apps: &HashMap<AppId, Arc<App>>,
    me: &str,
    cfg: &ConsumerConfig,
    stats: &AggregatorStats,
) -> Result<usize, BoxErr> {
    let mut total = 0;
    for id in apps.keys() {
        let mut take = redis::pipe();
        take.cmd("XAUTOCLAIM")
            .arg(keys::stream(id))
            .arg(GROUP)
            .arg(me)
            .arg(cfg.claim_idle.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(cfg.batch)
            .arg("JUSTID");
        let (reply,): (Value,) = pool.run(keys::route(id), &take).await?;
        let n = match &reply {
            Value::Array(parts) => match parts.get(1) {
                Some(Value::Array(ids)) => ids.len(),
                _ => 0,
            },
            _ => 0,
        };
        if n > 0 {
            let mut bump = redis::pipe();
            bump.cmd("INCR").arg(keys::aggregator_epoch(id));
            let (_,): (i64,) = pool.run(keys::route(id), &bump).await?;
            stats.claimed.inc_by(n as u64);
            total += n;
        }
    }
    Ok(total)
}

/// Reads one batch of `apps` (this consumer's pending entries when `recovering`, else new
/// ones, waiting up to `block` for them), rolls it up and writes it with its
/// acknowledgements in one transaction. On a cluster `apps` is one app.
async fn step(
    pool: &Pool,
    apps: &[&Arc<App>],
    me: &str,
    cfg: &ConsumerConfig,
    recovering: bool,
    block: Option<Duration>,
    now: i64,
) -> Result<Step, BoxErr> {
    let Some(first) = apps.first() else {
        return Ok(Step::Idle);
    };
    let mut conn = pool.get(keys::route(&first.id)).await?;
    match step_on(pool, &mut conn, apps, me, cfg, recovering, block, now).await {
        Ok(s) => Ok(s),
        Err(e) => {
            // The connection may still hold a WATCH or a late answer: never reuse it.
            pool.failed(conn, &e, true);
            Err(e.into())
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn step_on(
    pool: &Pool,
    conn: &mut Conn,
    apps: &[&Arc<App>],
    me: &str,
    cfg: &ConsumerConfig,
    recovering: bool,
    block: Option<Duration>,
    now: i64,
) -> Result<Step, tally_redis::Error> {
    let mut watch = redis::pipe();
    let cmd = watch.cmd("WATCH");
    for app in apps {
        cmd.arg(keys::aggregator_epoch(&app.id));
    }
    pool.query::<()>(conn, &watch, Duration::ZERO).await?;
    let mut pipe = redis::pipe();
    let read = pipe.cmd("XREADGROUP");
    read.arg("GROUP")
        .arg(GROUP)
        .arg(me)
        .arg("COUNT")
        .arg(cfg.batch);
    if let Some(b) = block.filter(|_| !recovering) {
        read.arg("BLOCK").arg(b.as_millis().max(1) as u64);
    }
    read.arg("STREAMS");
    for app in apps {
        read.arg(keys::stream(&app.id));
    }
    for _ in apps {
        read.arg(if recovering { "0" } else { ">" });
    }
    // The blocking read waits up to `block` for entries, on top of the exchange's own
    // timeout. Its reply is read in place: hundreds of entries are not copied into
    // values before they are parsed.
    let replies = pool
        .exchange(
            conn,
            &pipe.get_packed_pipeline(),
            tally_redis::conn::reply_count(&pipe),
            block.unwrap_or_default(),
        )
        .await?;
    tally_redis::conn::check(&replies)?;
    let reply = replies
        .node(0)
        .map_err(|e| tally_redis::Error::Protocol(e.to_string()))?;
    let by_stream = parse_read(&reply);
    let total: usize = by_stream.values().map(|(ids, _)| ids.len()).sum();
    if total == 0 {
        let mut unwatch = redis::pipe();
        unwatch.cmd("UNWATCH");
        pool.query::<()>(conn, &unwatch, Duration::ZERO).await?;
        return Ok(Step::Idle);
    }
    // Report definitions are read after the entries: a report created before an entry
    // arrived is then always seen, so reports count from the moment they are created.
    let with_entries: Vec<&&Arc<App>> = apps
        .iter()
        .filter(|a| {
            by_stream
                .get(&keys::stream(&a.id))
                .is_some_and(|(_, e)| !e.is_empty())
        })
        .collect();
    let mut reports: Reports = HashMap::new();
    if !with_entries.is_empty() {
        let mut defs = redis::pipe();
        for app in &with_entries {
            defs.cmd("HVALS").arg(keys::realtime_defs(&app.id));
        }
        let found: Vec<Vec<String>> = pool.query(conn, &defs, Duration::ZERO).await?;
        for (app, d) in with_entries.iter().zip(found) {
            let r = realtime::parse_defs(&d);
            if !r.is_empty() {
                reports.insert(app.id.clone(), r);
            }
        }
    }
    let mut pipe = redis::pipe();
    pipe.atomic();
    for app in apps {
        let stream = keys::stream(&app.id);
        let Some((entry_ids, entries)) = by_stream.get(&stream) else {
            continue;
        };
        write(
            &mut pipe,
            &rollup(&app.id, app.timezone, entries, cfg.retention, now),
        );
        if let Some(r) = reports.get(&app.id) {
            realtime::write(
                &mut pipe,
                &realtime::contribute(&app.id, r, entries, cfg.retention, now),
            );
        }
        pipe.cmd("XACK")
            .arg(&stream)
            .arg(GROUP)
            .arg(entry_ids)
            .ignore();
    }
    let done: Option<Value> = pool.query(conn, &pipe, Duration::ZERO).await?;
    Ok(match done {
        Some(_) => Step::Done(total),
        None => Step::Aborted,
    })
}

/// Stream key -> (every entry id, the entries this version understands).
fn parse_read(reply: &Node<'_>) -> HashMap<String, (Vec<String>, Vec<Entry>)> {
    let mut out = HashMap::new();
    let Node::Array(streams) = reply else {
        return out;
    };
    for s in streams {
        let Node::Array(kv) = s else { continue };
        let (Some(name), Some(Node::Array(list))) = (kv.first().and_then(Node::text), kv.get(1))
        else {
            continue;
        };
        let (ids, entries): &mut (Vec<String>, Vec<Entry>) =
            out.entry(name.to_string()).or_default();
        for item in list {
            let Node::Array(parts) = item else { continue };
            let Some(id) = parts.first().and_then(Node::text) else {
                continue;
            };
            let fields: Vec<(&str, &str)> = match parts.get(1) {
                Some(Node::Array(f)) => f
                    .chunks_exact(2)
                    .filter_map(|kv| Some((kv[0].text()?, kv[1].text()?)))
                    .collect(),
                // A pending entry that was trimmed away meanwhile: acknowledge it.
                _ => Vec::new(),
            };
            entries.extend(Entry::parse_all(id, &fields));
            ids.push(id.to_string());
        }
    }
    out
}

fn write(pipe: &mut redis::Pipeline, w: &Writes) {
    for ((k, f), v) in &w.ints {
        pipe.cmd("HINCRBY").arg(k).arg(f).arg(*v).ignore();
    }
    for ((k, f), v) in &w.floats {
        pipe.cmd("HINCRBYFLOAT").arg(k).arg(f).arg(*v).ignore();
    }
    for (k, devices) in &w.devices {
        pipe.cmd("PFADD")
            .arg(k)
            .arg(devices.iter().collect::<Vec<_>>())
            .ignore();
    }
    for (k, members) in &w.members {
        pipe.cmd("SADD")
            .arg(k)
            .arg(members.iter().collect::<Vec<_>>())
            .ignore();
    }
    for (k, secs) in &w.expire_in {
        pipe.cmd("EXPIRE").arg(k).arg(*secs).ignore();
    }
}
