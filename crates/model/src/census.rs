//! Counting an app's devices by their state: Countly's `total_users` (devices whose last
//! session falls in a period, in all or by a metric's value). A scan of the app's device
//! states on its node, a batch at a time, bounded: an app with more devices than the
//! bound gets an answer saying so, not a scan that runs for minutes.

use crate::device::{fingerprint, DeviceState};
use crate::error::StoreError;
use crate::keys::{self, AppId};
use std::collections::HashMap;
use tally_redis::Pool;

/// Device states read per scan step.
const BATCH: usize = 1000;

/// Devices whose last session began in `[from, to)` (UNIX seconds), in all and, when
/// `slot` is given, by the fingerprint of their value in that metric slot (0: none).
pub struct Counted {
    pub total: u64,
    pub by_value: HashMap<u32, u64>,
}

/// Counts the app's devices whose last session began in `[from, to)`; `Ok(Err(max))`
/// when the app has more than `max` devices.
pub async fn last_sessions(
    pool: &Pool,
    app: &AppId,
    from: i64,
    to: i64,
    slot: Option<usize>,
    max: usize,
) -> Result<Result<Counted, usize>, StoreError> {
    let route = keys::route(app);
    let pattern = keys::device_pattern(app);
    let mut out = Counted {
        total: 0,
        by_value: HashMap::new(),
    };
    let (mut cursor, mut seen) = (0u64, 0usize);
    loop {
        let mut scan = redis::pipe();
        scan.cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(BATCH);
        let ((next, batch),): ((u64, Vec<String>),) = pool.run(route, &scan).await?;
        seen += batch.len();
        if seen > max {
            return Ok(Err(max));
        }
        if !batch.is_empty() {
            let mut get = redis::pipe();
            get.cmd("MGET").arg(&batch);
            let (states,): (Vec<Option<Vec<u8>>>,) = pool.run(route, &get).await?;
            for bytes in states.into_iter().flatten() {
                // A state this version cannot read is counted by nobody (it is rewritten
                // at the device's next request).
                let Ok(state) = DeviceState::decode(&bytes) else {
                    continue;
                };
                let last = i64::from(state.last_session);
                if state.first_seen == 0 || last < from || last >= to {
                    continue;
                }
                out.total += 1;
                if let Some(s) = slot {
                    let v = state.snapshots.get(s).copied().unwrap_or(0);
                    *out.by_value.entry(v).or_default() += 1;
                }
            }
        }
        cursor = next;
        if cursor == 0 {
            return Ok(Ok(out));
        }
    }
}

/// The values of a metric's meta list by their fingerprints, to name counted groups.
pub fn names(values: &[String]) -> HashMap<u32, &str> {
    values
        .iter()
        .map(|v| (fingerprint(v), v.as_str()))
        .collect()
}
