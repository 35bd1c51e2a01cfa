//! The one connection type: a plain TCP or unix socket to one Redis node.
//!
//! The hot paths (the group commit's transactions, the read path's pipelines) pack their
//! commands with [`crate::resp::Packer`] and read replies in place with
//! [`crate::resp::Replies`]: no `Value` or `Vec` per field. Everything else builds a
//! `redis::Pipeline` and gets typed values back through [`compose`], which hands the
//! parsed replies to the `redis` crate's own result composition (transactions, ignored
//! commands, `FromRedisValue`). So there is one socket type, one way to time out and one
//! error type, whatever the caller.
//!
//! A connection is used by one task at a time (per-connection state such as the group
//! commit's `WATCH` or the aggregator's blocking stream read is never shared).

use crate::error::Error;
use crate::resp::Replies;
use redis::{ConnectionAddr, FromRedisValue, RedisConnectionInfo, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// A plain socket to one Redis node.
pub struct Conn {
    stream: Stream,
    /// Size of the last reply, to size the next buffer.
    last_reply: usize,
}

impl Conn {
    /// Connects and sends the same handshake the general client would: credentials,
    /// then the database.
    pub async fn connect(
        addr: &ConnectionAddr,
        settings: &RedisConnectionInfo,
        timeout: Duration,
    ) -> Result<Conn, Error> {
        let connect = async {
            let stream = match addr {
                ConnectionAddr::Tcp(host, port) => {
                    let s = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                    s.set_nodelay(true)?;
                    Stream::Tcp(s)
                }
                ConnectionAddr::Unix(path) => {
                    Stream::Unix(tokio::net::UnixStream::connect(path).await?)
                }
                // `pool()` refuses TLS at start-up; this is the backstop.
                other => {
                    return Err(Error::Config(format!(
                        "unsupported redis address {other:?} (TLS is not supported)"
                    )))
                }
            };
            let mut conn = Conn {
                stream,
                last_reply: 0,
            };
            let mut hello = redis::pipe();
            if let Some(pw) = settings.password() {
                let auth = hello.cmd("AUTH");
                if let Some(user) = settings.username() {
                    auth.arg(user);
                }
                auth.arg(pw);
            }
            if settings.db() != 0 {
                hello.cmd("SELECT").arg(settings.db());
            }
            if !hello.is_empty() {
                let r = conn
                    .exchange(&hello.get_packed_pipeline(), hello.len())
                    .await?;
                if let Some(e) = r.any_error() {
                    return Err(Error::Pool(format!("redis refused the handshake: {e}")));
                }
            }
            Ok(conn)
        };
        tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| Error::Timeout)?
    }

    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.stream {
            Stream::Tcp(s) => s.write_all(bytes).await,
            Stream::Unix(s) => s.write_all(bytes).await,
        }
    }

    pub(crate) async fn read_buf(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        match &mut self.stream {
            Stream::Tcp(s) => s.read_buf(buf).await,
            Stream::Unix(s) => s.read_buf(buf).await,
        }
    }

    /// Sends packed commands and reads `n` replies, error replies included (the caller
    /// decides what an error reply means). Not bounded in time: [`crate::Pool::exchange`]
    /// is. After an error the socket's state is unknown.
    pub async fn exchange(&mut self, packed: &[u8], n: usize) -> Result<Replies, Error> {
        self.write_all(packed).await?;
        // Sized like the last reply on this socket (bounded: one huge answer must not make
        // every later buffer huge).
        let mut replies = Replies::with_capacity(self.last_reply.clamp(4096, 1 << 20));
        loop {
            if replies
                .advance(n)
                .map_err(|e| Error::Protocol(e.to_string()))?
            {
                break;
            }
            let got = self.read_buf(replies.buffer()).await?;
            if got == 0 {
                return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
        if replies.trailing() > 0 {
            return Err(Error::Protocol("redis sent more than was asked".into()));
        }
        self.last_reply = replies.buffer().len();
        Ok(replies)
    }
}

/// How many replies Redis sends for `pipe`: a transaction adds `MULTI` and `EXEC`.
pub fn reply_count(pipe: &redis::Pipeline) -> usize {
    if pipe.is_transaction() {
        pipe.len() + 2
    } else {
        pipe.len()
    }
}

/// The first error reply, anywhere (inside `EXEC`'s answer too), as a typed error.
pub fn check(replies: &Replies) -> Result<(), Error> {
    match replies.any_error() {
        Some(e) => Err(Error::from_reply(e)),
        None => Ok(()),
    }
}

/// The typed result of `pipe` from its replies (checked for errors already), composed by
/// the `redis` crate as if it had talked to Redis itself.
pub fn compose<T: FromRedisValue>(pipe: &redis::Pipeline, replies: &Replies) -> Result<T, Error> {
    let mut values = Vec::with_capacity(replies.len());
    for i in 0..replies.len() {
        values.push(
            replies
                .value(i)
                .map_err(|e| Error::Protocol(e.to_string()))?,
        );
    }
    Ok(pipe.query(&mut Answered(values))?)
}

/// Replies already read, served to the `redis` crate's result composition.
struct Answered(Vec<Value>);

impl redis::ConnectionLike for Answered {
    fn req_packed_command(&mut self, _: &[u8]) -> redis::RedisResult<Value> {
        Ok(std::mem::take(&mut self.0)
            .into_iter()
            .next()
            .unwrap_or(Value::Nil))
    }

    fn req_packed_commands(
        &mut self,
        _: &[u8],
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<Value>> {
        Ok(std::mem::take(&mut self.0)
            .into_iter()
            .skip(offset)
            .take(count)
            .collect())
    }

    fn get_db(&self) -> i64 {
        0
    }

    fn check_connection(&mut self) -> bool {
        true
    }

    fn is_open(&self) -> bool {
        true
    }
}
