//! Tally's own RESP2 codec for its hot paths: [`Packer`] writes commands straight into one
//! buffer, and [`Replies`] parses a pipeline's replies in place into spans of one buffer.
//! Reading a year of counters (thousands of hash fields) then costs no allocation per
//! field (the general client parsed every field into its own `Vec`, about 40% of a
//! year-long `/o` answer's CPU), and a group commit's few hundred commands and their
//! replies cost no `Vec` or `Value` each (the general client's encoder and parser were
//! about 12% of the collector's CPU under begin_session load).

use std::fmt;

/// One element of a reply, in reading order; arrays are followed by their elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    /// An array of this many elements (the elements follow).
    Array(usize),
    /// A bulk string: its bytes' span in the buffer.
    Bulk(usize, usize),
    /// A simple string.
    Simple(usize, usize),
    /// An error reply (the message's span).
    Error(usize, usize),
    Int(i64),
    Nil,
}

/// A reply as a tree of spans of the reply buffer ([`Replies::node`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node<'a> {
    Array(Vec<Node<'a>>),
    /// A bulk string.
    Bytes(&'a [u8]),
    /// A simple string (a status such as `OK`).
    Simple(&'a [u8]),
    Int(i64),
    Nil,
}

impl<'a> Node<'a> {
    /// The text of a string node.
    pub fn text(&self) -> Option<&'a str> {
        match self {
            Node::Bytes(b) | Node::Simple(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The general client's `Value` of the node (its bytes copied).
    pub fn to_value(&self) -> redis::Value {
        use redis::Value;
        match self {
            Node::Array(items) => Value::Array(items.iter().map(Node::to_value).collect()),
            Node::Bytes(b) => Value::BulkString(b.to_vec()),
            Node::Simple(b) => Value::SimpleString(String::from_utf8_lossy(b).into_owned()),
            Node::Int(v) => Value::Int(*v),
            Node::Nil => Value::Nil,
        }
    }
}

/// The bytes broke the protocol (not a short read: more bytes cannot fix them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad reply from redis: {}", self.0)
    }
}

/// Commands packed into one buffer, ready to send as a pipeline: each an array of bulk
/// strings. A command announces its number of arguments first ([`Packer::cmd`]); a
/// command left short of them is a bug, caught by [`Packer::finish`].
#[derive(Debug, Default)]
pub struct Packer {
    buf: Vec<u8>,
    commands: usize,
    /// Arguments the current command still owes.
    owed: usize,
}

impl Packer {
    pub fn with_capacity(bytes: usize) -> Packer {
        Packer {
            buf: Vec::with_capacity(bytes),
            ..Packer::default()
        }
    }

    /// Starts a command of `argc` arguments (its name included).
    pub fn cmd(&mut self, argc: usize) -> &mut Packer {
        debug_assert_eq!(self.owed, 0, "the previous command is short of arguments");
        self.buf.push(b'*');
        self.push_len(argc);
        self.commands += 1;
        self.owed = argc;
        self
    }

    pub fn arg(&mut self, a: impl AsRef<[u8]>) -> &mut Packer {
        let a = a.as_ref();
        self.buf.push(b'$');
        self.push_len(a.len());
        self.buf.extend_from_slice(a);
        self.buf.extend_from_slice(b"\r\n");
        self.owed = self.owed.wrapping_sub(1);
        self
    }

    pub fn int(&mut self, v: i64) -> &mut Packer {
        let mut b = itoa::Buffer::new();
        self.arg(b.format(v))
    }

    fn push_len(&mut self, n: usize) {
        let mut b = itoa::Buffer::new();
        self.buf.extend_from_slice(b.format(n).as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }

    /// Commands packed so far.
    pub fn len(&self) -> usize {
        self.commands
    }

    pub fn is_empty(&self) -> bool {
        self.commands == 0
    }

    /// The packed bytes; an error when a command is short of (or over) its arguments.
    pub fn finish(&self) -> Result<&[u8], ProtocolError> {
        if self.owed != 0 {
            return Err(ProtocolError(
                "a command was packed with the wrong number of arguments".into(),
            ));
        }
        Ok(&self.buf)
    }
}

/// Deepest nesting accepted (Tally's replies nest at most three levels).
const MAX_DEPTH: usize = 16;

/// Replies being read: feed bytes with [`Replies::buffer`], then [`Replies::advance`] until
/// it says all are complete.
#[derive(Debug, Default)]
pub struct Replies {
    buf: Vec<u8>,
    toks: Vec<Tok>,
    /// Index in `toks` of each complete top-level reply.
    tops: Vec<usize>,
    /// Where the first incomplete reply starts in `buf`.
    parsed: usize,
}

impl Replies {
    pub fn with_capacity(bytes: usize) -> Replies {
        Replies {
            buf: Vec::with_capacity(bytes),
            ..Replies::default()
        }
    }

    /// The buffer to append newly read bytes to.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Parses what has arrived; true when `want` top-level replies are complete.
    pub fn advance(&mut self, want: usize) -> Result<bool, ProtocolError> {
        while self.tops.len() < want {
            let mark = self.toks.len();
            match parse(&self.buf, self.parsed, &mut self.toks, 0)? {
                Some(end) => {
                    self.tops.push(mark);
                    self.parsed = end;
                }
                None => {
                    self.toks.truncate(mark);
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// How many complete top-level replies have been parsed.
    pub fn len(&self) -> usize {
        self.tops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tops.is_empty()
    }

    /// Reply `i` as the general client's `Value`, for callers that want typed results
    /// rather than spans (everything off the hot paths). Error replies have no `Value`
    /// here: check for them first.
    pub fn value(&self, i: usize) -> Result<redis::Value, ProtocolError> {
        Ok(self.node(i)?.to_value())
    }

    /// Reply `i` as a tree of borrowed spans ([`Node`]): nested replies (a stream read's
    /// entries) read without copying a byte. An error reply anywhere is an error.
    pub fn node(&self, i: usize) -> Result<Node<'_>, ProtocolError> {
        let at = *self
            .tops
            .get(i)
            .ok_or_else(|| ProtocolError(format!("no reply {i}")))?;
        Ok(self.node_at(at)?.0)
    }

    fn node_at(&self, j: usize) -> Result<(Node<'_>, usize), ProtocolError> {
        let tok = self
            .toks
            .get(j)
            .ok_or_else(|| ProtocolError("reply ends early".into()))?;
        Ok(match *tok {
            Tok::Array(n) => {
                let mut items = Vec::with_capacity(n);
                let mut k = j + 1;
                for _ in 0..n {
                    let (v, next) = self.node_at(k)?;
                    items.push(v);
                    k = next;
                }
                (Node::Array(items), k)
            }
            Tok::Bulk(s, e) => (Node::Bytes(self.buf.get(s..e).unwrap_or_default()), j + 1),
            Tok::Simple(s, e) => (Node::Simple(self.buf.get(s..e).unwrap_or_default()), j + 1),
            Tok::Int(v) => (Node::Int(v), j + 1),
            Tok::Nil => (Node::Nil, j + 1),
            Tok::Error(s, e) => {
                return Err(ProtocolError(format!(
                    "unexpected error reply: {}",
                    String::from_utf8_lossy(self.buf.get(s..e).unwrap_or_default())
                )))
            }
        })
    }

    /// Bytes received beyond the complete replies (a well-behaved server sends none).
    pub fn trailing(&self) -> usize {
        self.buf.len() - self.parsed
    }

    fn text(&self, s: usize, e: usize) -> Option<&str> {
        std::str::from_utf8(self.buf.get(s..e)?).ok()
    }

    /// The message of reply `i` when it is an error.
    pub fn error(&self, i: usize) -> Option<&str> {
        match self.toks.get(*self.tops.get(i)?)? {
            Tok::Error(s, e) => self.text(*s, *e),
            _ => None,
        }
    }

    /// The first error among the replies.
    pub fn first_error(&self) -> Option<&str> {
        (0..self.tops.len()).find_map(|i| self.error(i))
    }

    /// The first error anywhere, nested ones included (as inside `EXEC`'s answer).
    pub fn any_error(&self) -> Option<&str> {
        self.toks.iter().find_map(|t| match t {
            Tok::Error(s, e) => Some(self.text(*s, *e).unwrap_or("(not UTF-8)")),
            _ => None,
        })
    }

    /// Whether reply `i` is a nil (`EXEC` after a watched key changed answers one).
    pub fn is_nil(&self, i: usize) -> bool {
        matches!(
            self.tops.get(i).and_then(|&at| self.toks.get(at)),
            Some(Tok::Nil)
        )
    }

    /// Reply `i` as bytes when it is a string.
    pub fn bytes(&self, i: usize) -> Option<&[u8]> {
        match self.toks.get(*self.tops.get(i)?)? {
            Tok::Bulk(s, e) | Tok::Simple(s, e) => self.buf.get(*s..*e),
            _ => None,
        }
    }

    /// The integer elements of array reply `i` (as `SMISMEMBER`'s), others as 0.
    pub fn ints(&self, i: usize) -> Vec<i64> {
        let (start, n) = match self.tops.get(i).map(|&at| (at, self.toks.get(at))) {
            Some((at, Some(Tok::Array(n)))) => (at + 1, *n),
            _ => return Vec::new(),
        };
        let mut out = Vec::with_capacity(n);
        let mut j = start;
        for _ in 0..n {
            out.push(match self.toks.get(j) {
                Some(Tok::Int(v)) => *v,
                _ => 0,
            });
            j = self.skip(j);
        }
        out
    }

    /// The elements of array reply `i` (as `MGET`'s), each as bytes when it is a string
    /// and `None` when it is a nil (or a nested array), borrowed.
    pub fn items(&self, i: usize) -> impl Iterator<Item = Option<&[u8]>> + '_ {
        let (start, n) = match self.tops.get(i).map(|&at| (at, self.toks.get(at))) {
            Some((at, Some(Tok::Array(n)))) => (at + 1, *n),
            _ => (0, 0),
        };
        let mut j = start;
        (0..n).map_while(move |_| {
            let tok = self.toks.get(j)?;
            j = self.skip(j);
            Some(match tok {
                Tok::Bulk(s, e) | Tok::Simple(s, e) => self.buf.get(*s..*e),
                _ => None,
            })
        })
    }

    /// The elements of array reply `i`, each as text when it is a UTF-8 string, borrowed.
    fn elements(&self, i: usize) -> impl Iterator<Item = Option<&str>> + '_ {
        self.items(i)
            .map(|b| b.and_then(|b| std::str::from_utf8(b).ok()))
    }

    /// The string elements of array reply `i` (others skipped), borrowed.
    pub fn strings(&self, i: usize) -> Vec<&str> {
        self.elements(i).flatten().collect()
    }

    /// The (field, value) pairs of a flat array reply such as `HGETALL`'s, borrowed.
    pub fn pairs(&self, i: usize) -> Vec<(&str, &str)> {
        let mut it = self.elements(i);
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            if let (Some(k), Some(v)) = (k, v) {
                out.push((k, v));
            }
        }
        out
    }

    /// Reply `i` as an integer (an integer reply, or a string that holds one).
    pub fn int(&self, i: usize) -> Option<i64> {
        match self.toks.get(*self.tops.get(i)?)? {
            Tok::Int(v) => Some(*v),
            Tok::Bulk(s, e) | Tok::Simple(s, e) => self.text(*s, *e)?.parse().ok(),
            _ => None,
        }
    }

    /// The token index after the element at `j` and everything nested in it.
    fn skip(&self, j: usize) -> usize {
        let mut pending = 1usize;
        let mut k = j;
        while pending > 0 {
            match self.toks.get(k) {
                Some(Tok::Array(n)) => pending += n,
                Some(_) => {}
                None => return k,
            }
            pending -= 1;
            k += 1;
        }
        k
    }
}

/// The end of the line starting at `pos` (the index of its `\r`), if it has arrived.
fn line_end(buf: &[u8], pos: usize) -> Option<usize> {
    let rel = buf.get(pos..)?.iter().position(|&b| b == b'\r')?;
    let end = pos + rel;
    (buf.len() > end + 1).then_some(end)
}

fn number(buf: &[u8], s: usize, e: usize) -> Result<i64, ProtocolError> {
    std::str::from_utf8(&buf[s..e])
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| {
            ProtocolError(format!(
                "not a number: {:?}",
                String::from_utf8_lossy(&buf[s..e])
            ))
        })
}

/// Parses one reply at `pos`, pushing its tokens. `Ok(None)`: more bytes are needed.
fn parse(
    buf: &[u8],
    pos: usize,
    toks: &mut Vec<Tok>,
    depth: usize,
) -> Result<Option<usize>, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError("replies nest too deep".into()));
    }
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(end) = line_end(buf, pos + 1) else {
        return Ok(None);
    };
    if buf[end + 1] != b'\n' {
        return Err(ProtocolError("a line does not end in CRLF".into()));
    }
    let next = end + 2;
    match kind {
        b'+' => {
            toks.push(Tok::Simple(pos + 1, end));
            Ok(Some(next))
        }
        b'-' => {
            toks.push(Tok::Error(pos + 1, end));
            Ok(Some(next))
        }
        b':' => {
            toks.push(Tok::Int(number(buf, pos + 1, end)?));
            Ok(Some(next))
        }
        b'$' => {
            let n = number(buf, pos + 1, end)?;
            if n < 0 {
                toks.push(Tok::Nil);
                return Ok(Some(next));
            }
            let n = n as usize;
            if buf.len() < next + n + 2 {
                return Ok(None);
            }
            if &buf[next + n..next + n + 2] != b"\r\n" {
                return Err(ProtocolError("a bulk string does not end in CRLF".into()));
            }
            toks.push(Tok::Bulk(next, next + n));
            Ok(Some(next + n + 2))
        }
        b'*' => {
            let n = number(buf, pos + 1, end)?;
            if n < 0 {
                toks.push(Tok::Nil);
                return Ok(Some(next));
            }
            toks.push(Tok::Array(n as usize));
            let mut at = next;
            for _ in 0..n {
                match parse(buf, at, toks, depth + 1)? {
                    Some(e) => at = e,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        other => Err(ProtocolError(format!(
            "unknown reply type {:?}",
            other as char
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(parts: &[&[u8]], want: usize) -> Replies {
        let mut r = Replies::default();
        for (i, p) in parts.iter().enumerate() {
            r.buffer().extend_from_slice(p);
            let done = r.advance(want).expect("valid");
            assert_eq!(done, i == parts.len() - 1, "after part {i}");
        }
        r
    }

    #[test]
    fn nested_replies_read_as_borrowed_nodes() {
        // A stream read: [[stream, [[id, [field, value]]]]].
        let r = feed(
            &[b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nt\r\n$1\r\nr\r\n"],
            1,
        );
        let n = r.node(0).expect("a node");
        let Node::Array(streams) = &n else {
            panic!("{n:?}")
        };
        let Node::Array(kv) = &streams[0] else {
            panic!("{n:?}")
        };
        assert_eq!(kv[0].text(), Some("s"));
        assert_eq!(
            kv[1],
            Node::Array(vec![Node::Array(vec![
                Node::Bytes(b"1-0"),
                Node::Array(vec![Node::Bytes(b"t"), Node::Bytes(b"r")])
            ])])
        );
        let nil = feed(&[b"*-1\r\n"], 1);
        assert_eq!(nil.node(0), Ok(Node::Nil));
        let err = feed(&[b"-ERR no\r\n"], 1);
        assert!(err.node(0).is_err());
    }

    #[test]
    fn parses_every_reply_kind_across_split_reads() {
        let all: &[u8] = b"*4\r\n$3\r\n1.t\r\n$1\r\n5\r\n$4\r\nw4.u\r\n$2\r\n12\r\n:42\r\n$-1\r\n*2\r\n$1\r\na\r\n*1\r\n:1\r\n-ERR boom\r\n+OK\r\n*0\r\n";
        // Every split point: a reply may arrive in any pieces.
        for cut in 1..all.len() {
            let r = feed(&[&all[..cut], &all[cut..]], 7);
            assert_eq!(r.pairs(0), vec![("1.t", "5"), ("w4.u", "12")]);
            assert_eq!(r.int(1), Some(42));
            assert_eq!(r.int(2), None);
            assert_eq!(r.strings(3), vec!["a"]);
            assert_eq!(r.error(4), Some("ERR boom"));
            assert_eq!(r.first_error(), Some("ERR boom"));
            assert!(r.strings(6).is_empty());
            assert_eq!(r.trailing(), 0);
        }
    }

    #[test]
    fn packs_commands_as_the_general_client_does() {
        let mut p = Packer::default();
        p.cmd(4).arg("HINCRBY").arg("{a}:k").arg(b"f\r\n").int(-12);
        p.cmd(1).arg("EXEC");
        let mut pipe = redis::pipe();
        pipe.cmd("HINCRBY").arg("{a}:k").arg(&b"f\r\n"[..]).arg(-12);
        pipe.cmd("EXEC");
        assert_eq!(
            p.finish().expect("complete"),
            &pipe.get_packed_pipeline()[..]
        );
        assert_eq!(p.len(), 2);
        let mut short = Packer::default();
        short.cmd(3).arg("GET").arg("k");
        assert!(short.finish().is_err());
    }

    #[test]
    fn reads_transaction_answers() {
        let all: &[u8] = b"+OK\r\n+QUEUED\r\n*3\r\n:1\r\n-WRONGTYPE no\r\n*2\r\n:0\r\n:1\r\n*-1\r\n$3\r\na\x00b\r\n";
        let r = feed(&[all], 5);
        assert_eq!(r.first_error(), None);
        assert_eq!(r.any_error(), Some("WRONGTYPE no"));
        assert!(r.is_nil(3) && !r.is_nil(2));
        assert_eq!(r.bytes(4), Some(&b"a\x00b"[..]));
        let ints = feed(&[b"*3\r\n:1\r\n:0\r\n:1\r\n"], 1);
        assert_eq!(ints.ints(0), vec![1, 0, 1]);
        // MGET: binary values and nils keep their places.
        let mget = feed(&[b"*3\r\n$2\r\n\x00\xff\r\n$-1\r\n$0\r\n\r\n"], 1);
        let items: Vec<Option<&[u8]>> = mget.items(0).collect();
        assert_eq!(items, vec![Some(&b"\x00\xff"[..]), None, Some(&b""[..])]);
        assert_eq!(mget.items(1).count(), 0);
    }

    #[test]
    fn refuses_broken_bytes() {
        for bad in [&b"?x\r\n"[..], b"$3\r\nabcd\r\n", b":12a\r\n", b"+OK\rX"] {
            let mut r = Replies::default();
            r.buffer().extend_from_slice(bad);
            assert!(r.advance(1).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut deep = Vec::new();
        for _ in 0..40 {
            deep.extend_from_slice(b"*1\r\n");
        }
        deep.extend_from_slice(b":1\r\n");
        let mut r = Replies::default();
        r.buffer().extend_from_slice(&deep);
        assert!(r.advance(1).is_err());
    }
}
