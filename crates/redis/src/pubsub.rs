//! A connection subscribed to one channel, for notices every process must hear at once
//! (an app's keys changed). On a Redis Cluster a `PUBLISH` reaches every node, so a
//! subscription to any node hears it.
//!
//! The subscription checks itself: when nothing arrived for a while it sends a `PING` and
//! expects the answer within the pool's timeout, so a silently dead socket is found and
//! the caller can act as if it missed messages (it may have).

use crate::conn::Conn;
use crate::error::Error;
use crate::pool::{Pool, Route};
use crate::resp::Replies;
use deadpool::managed;
use redis::Value;
use std::time::Duration;

/// Bytes kept for replies not yet handed out before the connection is given up (a
/// subscriber that reads its notices never holds more than a few).
const MAX_BUFFERED: usize = 1 << 20;

pub struct Subscription {
    conn: Conn,
    replies: Replies,
    /// Replies already handed out of `replies`.
    taken: usize,
    timeout: Duration,
}

impl Pool {
    /// A connection of its own (taken out of the pool for good) to the node of `route`,
    /// subscribed to `channel`.
    pub async fn subscribe(&self, route: Route<'_>, channel: &str) -> Result<Subscription, Error> {
        let conn = managed::Object::take(self.get(route).await?);
        let mut sub = Subscription {
            conn,
            replies: Replies::with_capacity(4096),
            taken: 0,
            timeout: self.timeout(),
        };
        let mut cmd = redis::cmd("SUBSCRIBE");
        cmd.arg(channel);
        sub.conn.write_all(&cmd.get_packed_command()).await?;
        match tokio::time::timeout(sub.timeout, sub.reply()).await {
            Ok(Ok(Value::Array(parts))) if kind(&parts) == Some("subscribe") => Ok(sub),
            Ok(Ok(other)) => Err(Error::Protocol(format!("SUBSCRIBE answered {other:?}"))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Timeout),
        }
    }
}

/// The first element of a pushed message (`message`, `subscribe`, `pong`).
fn kind(parts: &[Value]) -> Option<&str> {
    match parts.first()? {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

impl Subscription {
    /// The next reply the server pushes.
    async fn reply(&mut self) -> Result<Value, Error> {
        loop {
            if self
                .replies
                .advance(self.taken + 1)
                .map_err(|e| Error::Protocol(e.to_string()))?
            {
                if let Some(e) = self.replies.error(self.taken) {
                    return Err(Error::Protocol(format!("subscription: {e}")));
                }
                let v = self
                    .replies
                    .value(self.taken)
                    .map_err(|e| Error::Protocol(e.to_string()))?;
                self.taken += 1;
                if self.replies.trailing() == 0 {
                    // Everything read was handed out: start a clean buffer.
                    self.replies = Replies::with_capacity(4096);
                    self.taken = 0;
                }
                return Ok(v);
            }
            if self.replies.buffer().len() > MAX_BUFFERED {
                return Err(Error::Protocol("subscription: too much unread".into()));
            }
            if self.conn.read_buf(self.replies.buffer()).await? == 0 {
                return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// The payload of the next message on the channel. `Ok(None)` when none came within
    /// `idle` and the connection then answered a `PING`: it is alive and nothing was
    /// missed. An error means the connection is gone; messages may have been missed.
    pub async fn next(&mut self, idle: Duration) -> Result<Option<Vec<u8>>, Error> {
        let got = match tokio::time::timeout(idle, self.reply()).await {
            Ok(r) => Some(r?),
            Err(_) => None,
        };
        let value = match got {
            Some(v) => v,
            None => {
                self.conn
                    .write_all(&redis::cmd("PING").get_packed_command())
                    .await?;
                match tokio::time::timeout(self.timeout, self.reply()).await {
                    Ok(r) => r?,
                    Err(_) => return Err(Error::Timeout),
                }
            }
        };
        match value {
            Value::Array(mut parts) if kind(&parts) == Some("message") && parts.len() == 3 => {
                match parts.pop() {
                    Some(Value::BulkString(payload)) => Ok(Some(payload)),
                    other => Err(Error::Protocol(format!("message payload {other:?}"))),
                }
            }
            // A pong: the PING's answer, or one a message raced with (either way alive).
            Value::Array(parts) if kind(&parts) == Some("pong") => Ok(None),
            other => Err(Error::Protocol(format!("subscription pushed {other:?}"))),
        }
    }
}
