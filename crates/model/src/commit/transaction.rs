//! One batch, one transaction: the read phase (`WATCH`, `MGET`, `SMISMEMBER` in one round
//! trip), the planning of every item against what was read, and the write phase (`MULTI`
//! ... `EXEC` in one round trip), planned again from fresh reads after a `WATCH` conflict.
//! Commands are packed and replies parsed in place ([`tally_redis::resp`]).

use super::batch::{Batch, Field, Num, ReadSet, SetSlot};
use super::committer::{CommitStats, Item};
use super::{Outcome, Work};
use crate::device::DeviceState;
use crate::error::StoreError;
use crate::texthash::TextSet;
use rustc_hash::FxHashMap as HashMap;
use tally_config::CommitConfig;
use tally_redis::resp::{Packer, Replies};
use tally_redis::{Conn, Pool, PooledConn, Route};

/// Commits one group of items (one slot's) as one transaction, planned again from fresh
/// reads after each `WATCH` conflict, up to `max_retries` times.
pub(super) async fn flush<W: Work>(
    pool: &Pool,
    route: Route<'_>,
    cfg: &CommitConfig,
    stats: &CommitStats,
    items: &[&Item<W>],
) -> Result<Vec<Vec<Outcome>>, StoreError> {
    let mut reads = ReadSet::default();
    for item in items {
        item.work.reads(&mut reads);
    }
    let devices: Vec<String> = dedup(reads.devices);
    let mut sets: Vec<(String, Vec<String>)> = reads
        .members
        .into_iter()
        .map(|(set, ms)| (set, ms.into_iter().collect()))
        .collect();
    sets.sort_unstable();

    for _ in 0..=cfg.max_retries {
        let mut conn = pool.get(route).await?;
        let mut batch = match read_phase(pool, stats, &mut conn, &devices, &sets).await {
            Ok(b) => b,
            // A connection that went stale while idle (Redis restarted) fails on its first
            // command. Nothing has been written yet (no MULTI was sent): reconnect once.
            Err(e) => {
                let stale = matches!(&e, StoreError::Redis(tally_redis::Error::Io(_)));
                give_up(pool, conn, &e);
                if !stale {
                    return Err(e);
                }
                conn = pool.get(route).await?;
                match read_phase(pool, stats, &mut conn, &devices, &sets).await {
                    Ok(b) => b,
                    Err(e) => {
                        give_up(pool, conn, &e);
                        return Err(e);
                    }
                }
            }
        };
        // A bug in planning must fail this batch, not stop the committer for good.
        let planned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut memo = W::Memo::default();
            items
                .iter()
                .map(|i| i.work.plan(&mut batch, &mut memo))
                .collect::<Vec<Vec<Outcome>>>()
        }));
        let Ok(outcomes) = planned else {
            // Its keys are still watched: the socket does not go back to the pool.
            Pool::close(conn);
            return Err(StoreError::Bug("planning a batch panicked".into()));
        };
        let fields = batch.fields();
        let (corrupt, drops, written) =
            (batch.corrupt_states, batch.limit_drops, fields.len() as u64);
        match write_phase(pool, stats, &mut conn, cfg, &batch, &fields).await {
            Ok(true) => {
                stats.corrupt_states.inc_by(corrupt);
                stats.limit_drops.inc_by(drops);
                stats.counter_writes.inc_by(written);
                return Ok(outcomes);
            }
            Ok(false) => {}
            Err(e) => {
                give_up(pool, conn, &e);
                return Err(e);
            }
        }
        stats.conflicts.inc();
    }
    Err(StoreError::Contention)
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    v.sort_unstable();
    v.dedup();
    v
}

/// A failed exchange's connection: it holds a `WATCH` (or an unknown state), so it never
/// goes back to the pool; a Redis failure goes through the transport's failure policy.
fn give_up(pool: &Pool, conn: PooledConn, e: &StoreError) {
    match e {
        StoreError::Redis(r) => {
            pool.failed(conn, r, true);
        }
        _ => Pool::close(conn),
    }
}

/// Sends `p` and checks that no top-level reply is an error (errors inside `EXEC`'s
/// answer are the write phase's to report).
async fn send(
    pool: &Pool,
    stats: &CommitStats,
    c: &mut Conn,
    p: &Packer,
) -> Result<Replies, StoreError> {
    stats.round_trips.inc();
    let packed = p.finish().map_err(|e| StoreError::Bug(e.to_string()))?;
    let replies = pool
        .exchange(c, packed, p.len(), std::time::Duration::ZERO)
        .await?;
    match replies.first_error() {
        Some(err) => Err(tally_redis::Error::from_reply(err).into()),
        None => Ok(replies),
    }
}

async fn read_phase(
    pool: &Pool,
    stats: &CommitStats,
    c: &mut Conn,
    devices: &[String],
    sets: &[(String, Vec<String>)],
) -> Result<Batch, StoreError> {
    let mut batch = Batch::default();
    if devices.is_empty() && sets.is_empty() {
        return Ok(batch);
    }
    batch.device_index.reserve(devices.len());
    batch.devices.reserve(devices.len());
    let mut p = Packer::with_capacity(64 * (devices.len() + sets.len()) + 256);
    p.cmd(1 + devices.len() + sets.len()).arg("WATCH");
    for d in devices {
        p.arg(d);
    }
    for (s, _) in sets {
        p.arg(s);
    }
    // One MGET, not a GET per device: Redis's cost is mostly per command, not per key.
    // MGET answers nil for a key of another type too, so EXISTS counts the keys: more
    // keys than values means one is not a device state (written by something else).
    if !devices.is_empty() {
        for cmd in ["MGET", "EXISTS"] {
            p.cmd(1 + devices.len()).arg(cmd);
            for d in devices {
                p.arg(d);
            }
        }
    }
    for (s, ms) in sets {
        p.cmd(2 + ms.len()).arg("SMISMEMBER").arg(s);
        for m in ms {
            p.arg(m);
        }
    }
    let replies = send(pool, stats, c, &p).await?;
    // Reply 0 is WATCH's OK.
    let mut at = 1;
    if !devices.is_empty() {
        let values = replies.items(at).filter(Option::is_some).count();
        if replies.int(at + 1).unwrap_or(0) > values as i64 {
            foreign_device_key(pool, stats, c, devices, replies.items(at)).await?;
        }
        let mut states = replies.items(at);
        for d in devices {
            let original = states.next().ok_or_else(|| {
                StoreError::Redis(tally_redis::Error::Protocol(
                    "MGET answered fewer values than keys".into(),
                ))
            })?;
            let original = original.map(<[u8]>::to_vec);
            let state = match original.as_deref().map(DeviceState::decode) {
                None => DeviceState::default(),
                Some(Ok(s)) => s,
                Some(Err(_)) => {
                    tracing::warn!(key = %d, "corrupt device state, starting the device afresh");
                    batch.corrupt_states += 1;
                    DeviceState::default()
                }
            };
            batch.add_device(d.clone(), original, state);
        }
        at += 2;
    }
    // A set's size matters only when a member is new: asked for then, in a third round
    // trip (still under the WATCH), which a warmed-up app's flushes rarely need.
    let mut new_members = Vec::new();
    for (i, (s, ms)) in sets.iter().enumerate() {
        let flags = replies.ints(at + i);
        let present: TextSet<String> = ms
            .iter()
            .zip(&flags)
            .filter(|(_, f)| **f == 1)
            .map(|(m, _)| m.clone())
            .collect();
        let slot = batch.set_index.of(s, &mut batch.sets, SetSlot::default);
        if present.len() < ms.len() {
            new_members.push(slot);
        }
        batch.sets[slot].1.present = present;
    }
    if !new_members.is_empty() {
        let mut p = Packer::with_capacity(64 * new_members.len());
        for &slot in &new_members {
            p.cmd(2).arg("SCARD").arg(&batch.sets[slot].0);
        }
        let cards = send(pool, stats, c, &p).await?;
        for (j, &slot) in new_members.iter().enumerate() {
            batch.sets[slot].1.card = cards.int(j).unwrap_or(0).max(0) as usize;
        }
    }
    Ok(batch)
}

/// A device key holds something other than a string: GET each key MGET had no value for,
/// so the batch fails with Redis's own error (`WRONGTYPE`), counted, rather than writing a
/// fresh device state over someone else's data.
async fn foreign_device_key<'a>(
    pool: &Pool,
    stats: &CommitStats,
    c: &mut Conn,
    devices: &[String],
    values: impl Iterator<Item = Option<&'a [u8]>>,
) -> Result<(), StoreError> {
    let mut p = Packer::default();
    for (d, v) in devices.iter().zip(values) {
        if v.is_none() {
            p.cmd(2).arg("GET").arg(d);
        }
    }
    if !p.is_empty() {
        send(pool, stats, c, &p).await?;
    }
    Ok(())
}

/// Writes the batch in one transaction. `Ok(false)` when a watched key changed.
async fn write_phase(
    pool: &Pool,
    stats: &CommitStats,
    c: &mut Conn,
    cfg: &CommitConfig,
    batch: &Batch,
    fields: &HashMap<Field, Num>,
) -> Result<bool, StoreError> {
    let mut p = Packer::with_capacity(32 * 1024);
    p.cmd(1).arg("MULTI");
    // One MSET for every changed device state (one command, one AOF record).
    let changed: Vec<(&String, Vec<u8>)> = batch
        .device_index
        .iter()
        .filter_map(|(key, &i)| {
            let slot = &batch.devices[i];
            if slot.forgotten && slot.state.is_blank() {
                return None;
            }
            let encoded = slot.state.encode();
            (slot.original.as_deref() != Some(&encoded[..])).then_some((key, encoded))
        })
        .collect();
    // Devices that became others (and were not named again since): their states go.
    let gone: Vec<&String> = batch
        .device_index
        .iter()
        .filter(|(_, &i)| {
            let slot = &batch.devices[i];
            slot.forgotten && slot.state.is_blank() && slot.original.is_some()
        })
        .map(|(key, _)| key)
        .collect();
    if !gone.is_empty() {
        p.cmd(1 + gone.len()).arg("DEL");
        for key in &gone {
            p.arg(key);
        }
    }
    if !changed.is_empty() {
        p.cmd(1 + 2 * changed.len()).arg("MSET");
        for (key, encoded) in &changed {
            p.arg(key).arg(encoded);
        }
    }
    for (key, slot) in &batch.sets {
        if !slot.added.is_empty() {
            p.cmd(2 + slot.added.len()).arg("SADD").arg(key);
            for m in &slot.added {
                p.arg(m);
            }
            // New members, exactly once: the set is watched, so a member two batches
            // both found missing is added by one of them only.
            if slot.ordered {
                p.cmd(2 + slot.added.len())
                    .arg("RPUSH")
                    .arg(crate::keys::meta_order(key));
                for m in &slot.added {
                    p.arg(m);
                }
            }
        }
    }
    let (mut field, mut float) = (String::new(), String::new());
    for (f, n) in fields {
        let key = batch.hashes.get(f.hash.0);
        batch.field_text(f, &mut field);
        match *n {
            Num::Int(v) => p.cmd(4).arg("HINCRBY").arg(key).arg(&field).int(v),
            Num::Float(v) => {
                float.clear();
                let _ = std::fmt::Write::write_fmt(&mut float, format_args!("{v}"));
                p.cmd(4)
                    .arg("HINCRBYFLOAT")
                    .arg(key)
                    .arg(&field)
                    .arg(&float)
            }
        };
    }
    // Age trimming is the archiver's (`tally-archive`): it trims only behind what it has
    // archived. MAXLEN stays here as the hard bound on the stream's memory.
    let max_len = cfg.stream_max_len.min(i64::MAX as u64) as i64;
    for (stream, fields) in &batch.appends {
        p.cmd(6 + 2 * fields.len())
            .arg("XADD")
            .arg(stream)
            .arg("MAXLEN")
            .arg("~")
            .int(max_len)
            .arg("*");
        for (k, v) in fields {
            p.arg(k).arg(v);
        }
    }
    for (key, members) in &batch.hll {
        p.cmd(2 + members.len())
            .arg("PFADD")
            .arg(batch.hashes.get(key.0));
        for m in members {
            p.arg(m);
        }
    }
    // Last: an EXPIRE before the write that creates its key would do nothing.
    for (key, secs) in &batch.expire {
        p.cmd(3).arg("EXPIRE").arg(key).int(*secs);
    }
    if p.len() == 1 {
        // Nothing to write (all duplicates): drop the watches.
        let mut unwatch = Packer::default();
        unwatch.cmd(1).arg("UNWATCH");
        send(pool, stats, c, &unwatch).await?;
        return Ok(true);
    }
    p.cmd(1).arg("EXEC");
    let replies = send(pool, stats, c, &p).await?;
    let exec = p.len() - 1;
    if replies.is_nil(exec) {
        return Ok(false);
    }
    if let Some(err) = replies.any_error() {
        // A command failed inside the transaction (a key of the wrong type): Redis applied
        // the others. Only data written by something else than Tally can cause this.
        tracing::error!(
            error = err,
            "a command of a group commit failed inside EXEC"
        );
        return Err(tally_redis::Error::from_reply(err).into());
    }
    Ok(true)
}
