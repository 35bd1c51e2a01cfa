//! The transport's one error type. Replies are classified by their RESP error code (the
//! first word of an error reply, as the protocol defines it), so callers match on
//! variants and codes, never on printed messages.

/// What can go wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket failed (refused, reset, closed).
    #[error("redis connection: {0}")]
    Io(#[from] std::io::Error),
    /// No answer within the configured timeout.
    #[error("redis did not answer in time")]
    Timeout,
    /// The slot lives elsewhere or is unavailable (`MOVED`, `ASK`, `TRYAGAIN`,
    /// `CLUSTERDOWN`): the command ran nowhere and may be sent again.
    #[error("redis cluster redirect: {0}")]
    Redirect(String),
    /// Redis answered with an error reply; `code` is its first word (`WRONGTYPE`,
    /// `BUSYGROUP`, `EXECABORT`, ...).
    #[error("redis: {message}")]
    Reply { code: String, message: String },
    /// The bytes broke the protocol, or a reply had a shape the caller did not expect.
    #[error("bad reply from redis: {0}")]
    Protocol(String),
    /// No connection could be had (pool closed, no master for a slot, bad address).
    #[error("redis pool: {0}")]
    Pool(String),
    /// The configuration cannot work (for example a `rediss://` URL).
    #[error("redis configuration: {0}")]
    Config(String),
}

impl Error {
    /// The error an error reply stands for.
    pub fn from_reply(message: &str) -> Error {
        let code = message.split(' ').next().unwrap_or("");
        match code {
            "MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN" => Error::Redirect(message.to_string()),
            _ => Error::Reply {
                code: code.to_string(),
                message: message.to_string(),
            },
        }
    }

    /// The error code of an error reply (a redirect's too).
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Reply { code, .. } => Some(code),
            Error::Redirect(m) => m.split(' ').next(),
            _ => None,
        }
    }

    /// Whether the connection's state is unknown after this (a half-read reply, a dead
    /// socket): it must be closed, never reused.
    pub fn breaks_connection(&self) -> bool {
        matches!(self, Error::Io(_) | Error::Timeout | Error::Protocol(_))
    }

    /// Whether the command ran nowhere because a cluster slot moved.
    pub fn is_redirect(&self) -> bool {
        matches!(self, Error::Redirect(_))
    }
}

impl From<redis::RedisError> for Error {
    /// The general client's errors reach Tally only from parsing URLs and converting
    /// replies into typed values.
    fn from(e: redis::RedisError) -> Self {
        match e.code() {
            Some(code) => Error::Reply {
                code: code.to_string(),
                message: e.to_string(),
            },
            None if e.is_io_error() => Error::Io(std::io::Error::other(e.to_string())),
            None => Error::Protocol(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_classified_by_their_code() {
        assert!(Error::from_reply("MOVED 3999 127.0.0.1:6381").is_redirect());
        assert!(Error::from_reply("ASK 3999 127.0.0.1:6381").is_redirect());
        assert!(Error::from_reply("CLUSTERDOWN The cluster is down").is_redirect());
        let e = Error::from_reply("BUSYGROUP Consumer Group name already exists");
        assert_eq!(e.code(), Some("BUSYGROUP"));
        assert!(!e.is_redirect() && !e.breaks_connection());
        assert_eq!(
            Error::from_reply("WRONGTYPE Operation against a key").code(),
            Some("WRONGTYPE")
        );
        assert!(Error::Timeout.breaks_connection());
    }
}
