//! The archive's progress through an app's raw stream, in Redis: what has been written to
//! Parquet for good (`done`, the last archived entry id), the batch being written now
//! (`intent`), and which archiver holds the app (a lease).
//!
//! # Exactly once
//!
//! An archiver first records its batch as the intent: the entries after `done` up to and
//! including `end`, and the timezone their dates are taken in. Only then does it write
//! the batch's files, whose names and contents follow from the intent alone, and finally
//! commits (`done` = `end`, intent cleared) in one script that checks `done` has not moved.
//! An archiver that dies anywhere in between leaves the intent, and whoever comes next
//! writes the very same files again (replacing any it left) before committing: an entry
//! is in exactly one committed file, and no file of an abandoned batch survives under
//! another name. The stream is only trimmed behind `done` (by the commit), so the
//! intent's entries are always still there to be read again.

use crate::error::StoreError;
use crate::keys::{self, AppId};
use tally_redis::Pool;

/// A stream entry id, `ms-seq`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EntryId {
    pub ms: u64,
    pub seq: u64,
}

impl EntryId {
    /// Past every id.
    pub const MAX: EntryId = EntryId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub fn parse(s: &str) -> Option<EntryId> {
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        Some(EntryId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// The id right after this one (the first a `MINID` trim keeps).
    pub fn next(self) -> EntryId {
        match self.seq.checked_add(1) {
            Some(seq) => EntryId { ms: self.ms, seq },
            None => EntryId {
                ms: self.ms.saturating_add(1),
                seq: 0,
            },
        }
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A batch being archived: the entries after the state's `done` up to `end`, dated in
/// `timezone`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub end: EntryId,
    pub timezone: String,
}

/// Where the archive stands for one app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The last entry archived for good (`0-0`: none yet).
    pub done: EntryId,
    pub intent: Option<Intent>,
}

fn parse_intent(s: &str) -> Option<Intent> {
    let (end, tz) = s.split_once('|')?;
    Some(Intent {
        end: EntryId::parse(end)?,
        timezone: tz.to_string(),
    })
}

pub async fn state(pool: &Pool, app: &AppId) -> Result<State, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("HMGET")
        .arg(keys::archive_state(app))
        .arg("done")
        .arg("intent");
    let ((done, intent),): ((Option<String>, Option<String>),) =
        pool.run(keys::route(app), &pipe).await?;
    Ok(State {
        done: done.as_deref().and_then(EntryId::parse).unwrap_or_default(),
        intent: intent.as_deref().and_then(parse_intent),
    })
}

const BEGIN: &str = r"
local done = redis.call('HGET', KEYS[1], 'done') or '0-0'
if done ~= ARGV[1] then return {done, redis.call('HGET', KEYS[1], 'intent') or ''} end
local intent = redis.call('HGET', KEYS[1], 'intent')
if not intent then
  intent = ARGV[2]
  redis.call('HSET', KEYS[1], 'done', done, 'intent', intent)
end
return {done, intent}
";

/// Records `intent` as the batch after `done`, unless another is already recorded (then
/// that one stands) or `done` moved. Returns the state after.
pub async fn begin(
    pool: &Pool,
    app: &AppId,
    done: EntryId,
    intent: &Intent,
) -> Result<State, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("EVAL")
        .arg(BEGIN)
        .arg(1)
        .arg(keys::archive_state(app))
        .arg(done.to_string())
        .arg(format!("{}|{}", intent.end, intent.timezone));
    let ((done, intent),): ((String, String),) = pool.run(keys::route(app), &pipe).await?;
    Ok(State {
        done: EntryId::parse(&done).unwrap_or_default(),
        intent: parse_intent(&intent),
    })
}

const COMMIT: &str = r"
local done = redis.call('HGET', KEYS[1], 'done') or '0-0'
local intent = redis.call('HGET', KEYS[1], 'intent') or ''
if done ~= ARGV[1] or intent ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'done', ARGV[3])
redis.call('HDEL', KEYS[1], 'intent')
return 1
";

/// Commits the intent `intent` that followed `done`: `done` becomes its end. False when
/// another archiver committed it first (nothing changes).
pub async fn commit(
    pool: &Pool,
    app: &AppId,
    done: EntryId,
    intent: &Intent,
) -> Result<bool, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("EVAL")
        .arg(COMMIT)
        .arg(1)
        .arg(keys::archive_state(app))
        .arg(done.to_string())
        .arg(format!("{}|{}", intent.end, intent.timezone))
        .arg(intent.end.to_string());
    let (n,): (i64,) = pool.run(keys::route(app), &pipe).await?;
    Ok(n == 1)
}

const LEASE: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// Takes or extends the lease on an app's archiving for `ttl_ms`; false while another
/// archiver holds it. The lease keeps two archivers from doing the same work; exactly
/// once does not depend on it (see the module's doc).
pub async fn lease(pool: &Pool, app: &AppId, me: &str, ttl_ms: u64) -> Result<bool, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("EVAL")
        .arg(LEASE)
        .arg(1)
        .arg(keys::archive_lease(app))
        .arg(me)
        .arg(ttl_ms.max(1));
    let (n,): (i64,) = pool.run(keys::route(app), &pipe).await?;
    Ok(n == 1)
}

/// Trims the app's stream to the entries from `min` on.
pub async fn trim(pool: &Pool, app: &AppId, min: EntryId) -> Result<u64, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("XTRIM")
        .arg(keys::stream(app))
        .arg("MINID")
        .arg("~")
        .arg(min.to_string());
    let (n,): (u64,) = pool.run(keys::route(app), &pipe).await?;
    Ok(n)
}

/// Devices forgotten whose archived rows are still to be removed (at most 1,000 a pass).
pub async fn forgotten(pool: &Pool, app: &AppId) -> Result<Vec<String>, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("SRANDMEMBER")
        .arg(keys::archive_forget(app))
        .arg(1000);
    let (devices,): (Vec<String>,) = pool.run(keys::route(app), &pipe).await?;
    Ok(devices)
}

/// Marks devices' archived rows as removed.
pub async fn forgotten_done(
    pool: &Pool,
    app: &AppId,
    devices: &[String],
) -> Result<(), StoreError> {
    if devices.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    pipe.cmd("SREM").arg(keys::archive_forget(app)).arg(devices);
    let (_,): (u64,) = pool.run(keys::route(app), &pipe).await?;
    Ok(())
}

/// One raw stream entry: its id and its fields.
pub type RawEntry = (String, Vec<(String, String)>);

/// Up to `count` entries of the app's stream after `after`, up to `until` (inclusive)
/// when given.
pub async fn read(
    pool: &Pool,
    app: &AppId,
    after: EntryId,
    until: Option<EntryId>,
    count: usize,
) -> Result<Vec<RawEntry>, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("XRANGE")
        .arg(keys::stream(app))
        .arg(format!("({after}"))
        .arg(until.map_or("+".to_string(), |u| u.to_string()))
        .arg("COUNT")
        .arg(count.max(1));
    let (entries,): (Vec<(String, Vec<String>)>,) = pool.run(keys::route(app), &pipe).await?;
    Ok(entries
        .into_iter()
        .map(|(id, flat)| {
            let mut fields = Vec::with_capacity(flat.len() / 2);
            let mut it = flat.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                fields.push((k, v));
            }
            (id, fields)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_order_and_step() {
        let a = EntryId::parse("5-1").unwrap_or_default();
        let b = EntryId::parse("10-0").unwrap_or_default();
        assert!(a < b);
        assert_eq!(a.next().to_string(), "5-2");
        assert_eq!(EntryId::parse("7"), Some(EntryId { ms: 7, seq: 0 }));
        assert_eq!(EntryId::parse("x-1"), None);
        assert_eq!(
            parse_intent("9-3|Europe/Berlin"),
            Some(Intent {
                end: EntryId { ms: 9, seq: 3 },
                timezone: "Europe/Berlin".into()
            })
        );
    }
}
