//! Lightstreamer's text protocol (TLCP 2.x) over a WebSocket, as far as IG's streaming needs it:
//! encoding the client's requests, reading the server's lines, decoding real-time updates.
//!
//! Everything here is pure (no I/O), so that every input the server can send is covered by unit,
//! property and fuzz tests (`feeders/tests/fuzz_ig.rs`). The wire facts come from the TLCP
//! specification and the official clients' test transcripts; see `tests/src/fake_ig.md`.

use std::fmt;

/// The WebSocket subprotocol. IG refused 2.5.0 clients ("65 - Unsupported protocol version"),
/// while 2.4.0 works against it; every request and message used here is the same in both.
pub const SUBPROTOCOL: &str = "TLCP-2.4.0.lightstreamer.com";

/// The client id the specification asks custom clients to send.
pub const CID: &str = "mgQkwtwdysogQz2BJ4Ji kOj2Bg";

/// Longest server line accepted: IG's lines are a few hundred bytes; anything far longer is a
/// broken or hostile stream and is refused as one unreadable line.
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlcpError {
    /// The tag (text before the first comma) is not one TLCP defines.
    UnknownTag(String),
    /// A known tag with fewer arguments than it always has.
    MissingArguments { tag: &'static str, expected: usize },
    /// An argument that must be a number is not.
    BadNumber { tag: &'static str, argument: String },
    /// A `%` not followed by two hex digits, or bytes that are not UTF-8 once decoded.
    BadEncoding(String),
    /// A line longer than [`MAX_LINE`].
    LineTooLong(usize),
    /// An update with more or fewer values than the subscription's fields.
    FieldCount { expected: usize, got: usize },
    /// `^` followed by something that is neither a count nor a diff format.
    BadCaret(String),
    /// A value sent as a difference (`^P` JSON patch, `^T` TLCP-diff): never asked for (the
    /// session is created with an empty `LS_supported_diffs`), so not decoded.
    UnsupportedDiff(char),
}

impl fmt::Display for TlcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlcpError::UnknownTag(t) => write!(f, "unknown TLCP message {t:?}"),
            TlcpError::MissingArguments { tag, expected } => write!(f, "{tag} needs {expected} arguments"),
            TlcpError::BadNumber { tag, argument } => write!(f, "{tag}: {argument:?} is not a number"),
            TlcpError::BadEncoding(v) => write!(f, "bad percent-encoding in {v:?}"),
            TlcpError::LineTooLong(n) => write!(f, "line of {n} bytes (at most {MAX_LINE} accepted)"),
            TlcpError::FieldCount { expected, got } => {
                write!(f, "update carries {got} field values, the subscription has {expected} fields")
            }
            TlcpError::BadCaret(v) => write!(f, "bad ^ value {v:?}"),
            TlcpError::UnsupportedDiff(c) => write!(f, "diff-encoded value (^{c}) that was not asked for"),
        }
    }
}

impl std::error::Error for TlcpError {}

// ---------------------------------------------------------------------------------------------
// Percent-encoding
// ---------------------------------------------------------------------------------------------

/// Percent-encodes a request value. TLCP requires only CR, LF, `&`, `=`, `%` and `+` to be
/// encoded, and servers accept any UTF-8 percent-encoding; like the official clients, everything
/// but unreserved characters is encoded (a space becomes `%20`, never `+`).
pub fn encode_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes (either case); `+` is a plus sign, not a space.
pub fn percent_decode(s: &str) -> Result<String, TlcpError> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let (Some(h), Some(l)) =
                (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex))
            else {
                return Err(TlcpError::BadEncoding(shorten(s)));
            };
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| TlcpError::BadEncoding(shorten(s)))
}

/// Decodes a human-readable argument (an error message), keeping it as sent when it is not
/// validly encoded: a message is for people, and a garbled one is still worth showing.
fn decode_lenient(s: &str) -> String {
    percent_decode(s).unwrap_or_else(|_| s.to_string())
}

fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

// ---------------------------------------------------------------------------------------------
// Requests (client to server)
// ---------------------------------------------------------------------------------------------

/// A request: its name, CRLF, then `k=v&k=v` with every value encoded. One WebSocket text
/// message each.
pub fn request(name: &str, params: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(64);
    out.push_str(name);
    out.push_str("\r\n");
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(&encode_value(v));
    }
    out
}

/// The WebSocket check sent first on every socket; answered by `WSOK`. It has no parameter line.
pub const WSOK: &str = "wsok";

/// `create_session`. `LS_user` is IG's account id and `LS_password` `CST-<cst>|XST-<token>`;
/// no adapter set (IG's default), no diffs (every value arrives whole), no SYNC notifications.
pub fn create_session(user: &str, password: &str, old_session: Option<&str>, cause: &str) -> String {
    let mut params = vec![
        ("LS_user", user),
        ("LS_password", password),
        ("LS_cid", CID),
        ("LS_supported_diffs", ""),
        ("LS_send_sync", "false"),
        ("LS_cause", cause),
    ];
    if let Some(old) = old_session {
        params.push(("LS_old_session", old));
    }
    request("create_session", &params)
}

/// `bind_session` on a new socket after `LOOP`: the session and its subscriptions go on.
pub fn bind_session(session: &str) -> String {
    request("bind_session", &[("LS_session", session), ("LS_send_sync", "false"), ("LS_cause", "ws.loop")])
}

/// Subscription modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Merge,
    Distinct,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Merge => "MERGE",
            Mode::Distinct => "DISTINCT",
        }
    }
}

/// `control` adding subscription `sub_id` to one item with these fields, with its snapshot
/// (MERGE: the current values; DISTINCT: the server's recent events, ended by `EOS`).
pub fn subscribe(req_id: u64, sub_id: u64, group: &str, fields: &[&str], mode: Mode) -> String {
    let (req, sub, schema) = (req_id.to_string(), sub_id.to_string(), fields.join(" "));
    request(
        "control",
        &[
            ("LS_reqId", &req),
            ("LS_op", "add"),
            ("LS_subId", &sub),
            ("LS_group", group),
            ("LS_schema", &schema),
            ("LS_mode", mode.as_str()),
            ("LS_snapshot", "true"),
        ],
    )
}

/// `control` deleting a subscription; the server answers `REQOK` then `UNSUB`.
pub fn unsubscribe(req_id: u64, sub_id: u64) -> String {
    let (req, sub) = (req_id.to_string(), sub_id.to_string());
    request("control", &[("LS_reqId", &req), ("LS_op", "delete"), ("LS_subId", &sub)])
}

/// `control` closing the session (answered by `END,31`).
pub fn destroy(req_id: u64) -> String {
    let req = req_id.to_string();
    request("control", &[("LS_reqId", &req), ("LS_op", "destroy")])
}

// ---------------------------------------------------------------------------------------------
// Server lines
// ---------------------------------------------------------------------------------------------

/// One server line, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    WsOk,
    ConOk {
        session: String,
        request_limit: u64,
        keepalive_ms: u64,
        control_link: Option<String>,
    },
    ConErr {
        code: i64,
        message: String,
    },
    End {
        code: i64,
        message: String,
    },
    Loop {
        delay_ms: u64,
    },
    Probe,
    Noop,
    Sync {
        seconds: u64,
    },
    ServName(String),
    ClientIp(String),
    Cons(String),
    Prog(u64),
    /// `REQOK,<id>`; a bare `REQOK` answers a heartbeat.
    ReqOk {
        req_id: Option<u64>,
    },
    ReqErr {
        req_id: u64,
        code: i64,
        message: String,
    },
    Error {
        code: i64,
        message: String,
    },
    SubOk {
        sub_id: u64,
        items: u64,
        fields: u64,
    },
    SubCmd {
        sub_id: u64,
        items: u64,
        fields: u64,
    },
    Conf {
        sub_id: u64,
    },
    /// `U,<sub>,<item>,<values>`: the values still in their second-level encoding, for
    /// [`ItemState::apply`].
    Update {
        sub_id: u64,
        item: u64,
        values: String,
    },
    Eos {
        sub_id: u64,
        item: u64,
    },
    Cs {
        sub_id: u64,
        item: u64,
    },
    Ov {
        sub_id: u64,
        item: u64,
        lost: u64,
    },
    Unsub {
        sub_id: u64,
    },
    MsgDone,
    MsgFail,
}

/// The lines of one WebSocket message: split on CRLF (a lone LF is tolerated), empty lines
/// skipped, as the official clients do.
pub fn lines(message: &str) -> impl Iterator<Item = &str> {
    message.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).filter(|l| !l.is_empty())
}

/// Splits `rest` into exactly `n` arguments (the last one keeps any further commas).
fn args<'a>(tag: &'static str, rest: Option<&'a str>, n: usize) -> Result<Vec<&'a str>, TlcpError> {
    let missing = TlcpError::MissingArguments { tag, expected: n };
    let rest = rest.ok_or(missing.clone())?;
    let v: Vec<&str> = rest.splitn(n, ',').collect();
    if v.len() < n {
        return Err(missing);
    }
    Ok(v)
}

fn unsigned(tag: &'static str, s: &str) -> Result<u64, TlcpError> {
    // Digits only: `+5`, ` 5` and `5.0` are not TLCP numbers.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TlcpError::BadNumber { tag, argument: shorten(s) });
    }
    s.parse().map_err(|_| TlcpError::BadNumber { tag, argument: shorten(s) })
}

fn signed(tag: &'static str, s: &str) -> Result<i64, TlcpError> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TlcpError::BadNumber { tag, argument: shorten(s) });
    }
    s.parse().map_err(|_| TlcpError::BadNumber { tag, argument: shorten(s) })
}

/// Reads one line (without its CRLF).
pub fn parse_line(line: &str) -> Result<ServerMessage, TlcpError> {
    if line.len() > MAX_LINE {
        return Err(TlcpError::LineTooLong(line.len()));
    }
    let (tag, rest) = match line.split_once(',') {
        Some((t, r)) => (t, Some(r)),
        None => (line, None),
    };
    use ServerMessage as M;
    Ok(match tag {
        "U" => {
            let a = args("U", rest, 3)?;
            M::Update { sub_id: unsigned("U", a[0])?, item: unsigned("U", a[1])?, values: a[2].to_string() }
        }
        "PROBE" => M::Probe,
        "WSOK" => M::WsOk,
        "CONOK" => {
            let a = args("CONOK", rest, 4)?;
            M::ConOk {
                session: decode_strict(a[0])?,
                request_limit: unsigned("CONOK", a[1])?,
                keepalive_ms: unsigned("CONOK", a[2])?,
                control_link: match a[3] {
                    "*" => None,
                    link => Some(decode_strict(link)?),
                },
            }
        }
        "CONERR" => {
            let a = args("CONERR", rest, 2)?;
            M::ConErr { code: signed("CONERR", a[0])?, message: decode_lenient(a[1]) }
        }
        "END" => {
            let a = args("END", rest, 2)?;
            M::End { code: signed("END", a[0])?, message: decode_lenient(a[1]) }
        }
        "LOOP" => M::Loop { delay_ms: unsigned("LOOP", args("LOOP", rest, 1)?[0])? },
        "NOOP" => M::Noop,
        "SYNC" => M::Sync { seconds: unsigned("SYNC", args("SYNC", rest, 1)?[0])? },
        "SERVNAME" => M::ServName(decode_lenient(args("SERVNAME", rest, 1)?[0])),
        "CLIENTIP" => M::ClientIp(decode_lenient(args("CLIENTIP", rest, 1)?[0])),
        "CONS" => M::Cons(decode_lenient(args("CONS", rest, 1)?[0])),
        "PROG" => M::Prog(unsigned("PROG", args("PROG", rest, 1)?[0])?),
        "REQOK" => M::ReqOk {
            req_id: match rest {
                None => None,
                Some(r) => Some(unsigned("REQOK", r)?),
            },
        },
        "REQERR" => {
            let a = args("REQERR", rest, 3)?;
            M::ReqErr {
                req_id: unsigned("REQERR", a[0])?,
                code: signed("REQERR", a[1])?,
                message: decode_lenient(a[2]),
            }
        }
        "ERROR" => {
            let a = args("ERROR", rest, 2)?;
            M::Error { code: signed("ERROR", a[0])?, message: decode_lenient(a[1]) }
        }
        "SUBOK" => {
            let a = args("SUBOK", rest, 3)?;
            M::SubOk {
                sub_id: unsigned("SUBOK", a[0])?,
                items: unsigned("SUBOK", a[1])?,
                fields: unsigned("SUBOK", a[2])?,
            }
        }
        "SUBCMD" => {
            let a = args("SUBCMD", rest, 5)?;
            M::SubCmd {
                sub_id: unsigned("SUBCMD", a[0])?,
                items: unsigned("SUBCMD", a[1])?,
                fields: unsigned("SUBCMD", a[2])?,
            }
        }
        "CONF" => M::Conf { sub_id: unsigned("CONF", args("CONF", rest, 3)?[0])? },
        "EOS" | "CS" => {
            let t = if tag == "EOS" { "EOS" } else { "CS" };
            let a = args(t, rest, 2)?;
            let (sub_id, item) = (unsigned(t, a[0])?, unsigned(t, a[1])?);
            if t == "EOS" {
                M::Eos { sub_id, item }
            } else {
                M::Cs { sub_id, item }
            }
        }
        "OV" => {
            let a = args("OV", rest, 3)?;
            M::Ov { sub_id: unsigned("OV", a[0])?, item: unsigned("OV", a[1])?, lost: unsigned("OV", a[2])? }
        }
        "UNSUB" => M::Unsub { sub_id: unsigned("UNSUB", args("UNSUB", rest, 1)?[0])? },
        "MSGDONE" => M::MsgDone,
        "MSGFAIL" => M::MsgFail,
        other => return Err(TlcpError::UnknownTag(shorten(other))),
    })
}

fn decode_strict(s: &str) -> Result<String, TlcpError> {
    percent_decode(s)
}

// ---------------------------------------------------------------------------------------------
// Real-time updates
// ---------------------------------------------------------------------------------------------

/// A field's value: TLCP distinguishes null (`#`) from the empty string (`$`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Null,
    Text(String),
}

impl Field {
    /// The text, or `None` for null.
    pub fn text(&self) -> Option<&str> {
        match self {
            Field::Null => None,
            Field::Text(s) => Some(s),
        }
    }
}

/// The current values of one subscribed item. A value is `None` while it is not known: before
/// the first update, and after an update that could not be read (later updates send only what
/// changed, so the item's old values could be silently wrong from then on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemState {
    values: Vec<Option<Field>>,
}

impl ItemState {
    pub fn new(fields: usize) -> ItemState {
        ItemState { values: vec![None; fields] }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The value of field `i` (0-based), `None` when unknown.
    pub fn get(&self, i: usize) -> Option<&Field> {
        self.values.get(i).and_then(Option::as_ref)
    }

    /// The text of field `i`: `None` when null, empty or unknown.
    pub fn text(&self, i: usize) -> Option<&str> {
        self.get(i).and_then(Field::text).filter(|s| !s.is_empty())
    }

    /// Forgets every value (after an update that could not be read).
    pub fn invalidate(&mut self) {
        self.values.iter_mut().for_each(|v| *v = None);
    }

    /// Applies the value list of a `U` line. All or nothing: on an error the state is
    /// unchanged (the caller decides whether to [`invalidate`](ItemState::invalidate) it).
    /// Returns, per field, whether this update set it to a value different from before.
    pub fn apply(&mut self, encoded: &str) -> Result<Vec<bool>, TlcpError> {
        let n = self.values.len();
        let mut next = self.values.clone();
        let mut changed = vec![false; n];
        let mut p = 0usize;
        let mut tokens = 0usize;
        for token in encoded.split('|') {
            tokens += 1;
            if p >= n {
                return Err(TlcpError::FieldCount { expected: n, got: p + 1 });
            }
            let value = match token {
                "" => {
                    p += 1;
                    continue;
                }
                "#" => Field::Null,
                "$" => Field::Text(String::new()),
                t if t.starts_with('^') => {
                    let rest = &t[1..];
                    match rest.chars().next() {
                        Some(c) if c.is_ascii_digit() => {
                            let count = unsigned("U", rest).map_err(|_| TlcpError::BadCaret(shorten(t)))?;
                            let count =
                                usize::try_from(count).map_err(|_| TlcpError::BadCaret(shorten(t)))?;
                            if count == 0 {
                                return Err(TlcpError::BadCaret(shorten(t)));
                            }
                            if count > n - p {
                                return Err(TlcpError::FieldCount {
                                    expected: n,
                                    got: p.saturating_add(count),
                                });
                            }
                            p += count;
                            continue;
                        }
                        Some(c) if c.is_ascii_alphabetic() => return Err(TlcpError::UnsupportedDiff(c)),
                        _ => return Err(TlcpError::BadCaret(shorten(t))),
                    }
                }
                t => Field::Text(percent_decode(t)?),
            };
            if next[p].as_ref() != Some(&value) {
                changed[p] = true;
            }
            next[p] = Some(value);
            p += 1;
        }
        if p != n {
            return Err(TlcpError::FieldCount { expected: n, got: p.max(tokens) });
        }
        self.values = next;
        Ok(changed)
    }
}

/// Encodes field values as a server does in a first (full) update: for tests and the fake.
pub fn encode_update_values(values: &[Field]) -> String {
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push('|');
        }
        match v {
            Field::Null => out.push('#'),
            Field::Text(s) if s.is_empty() => out.push('$'),
            Field::Text(s) => {
                for (j, ch) in s.char_indices() {
                    let lead = j == 0 && matches!(ch, '#' | '$' | '^');
                    if lead || matches!(ch, '|' | '\r' | '\n' | '%') {
                        let mut buf = [0u8; 4];
                        for b in ch.encode_utf8(&mut buf).bytes() {
                            out.push_str(&format!("%{b:02X}"));
                        }
                    } else {
                        out.push(ch);
                    }
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// What a session error means
// ---------------------------------------------------------------------------------------------

/// What to do after `CONERR` or `END` with a code (Appendix A of the specification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAction {
    /// Open a new session at once (the server asked for a refresh: 41, 48).
    Renew,
    /// Open a new session after a backoff (overload, session limits, closed by the server).
    Retry,
    /// The credentials were refused (1): log in to IG again for fresh tokens, then retry.
    Relogin,
    /// Retrying as configured cannot help (bad adapter set, licence, protocol or syntax).
    Stop,
}

/// After `CONERR,<code>` to a create or bind request.
pub fn conerr_action(code: i64) -> SessionAction {
    match code {
        1 => SessionAction::Relogin,
        41 | 48 => SessionAction::Renew,
        4 | 5 | 6 | 8 | 9 | 10 | 20 | 21 | 32..=35 | 40 | 68 => SessionAction::Retry,
        _ => SessionAction::Stop,
    }
}

/// After `END,<code>` on a live session. Official clients give up on most codes; a feeder
/// keeps going after a backoff unless the code says retrying cannot work.
pub fn end_action(code: i64) -> SessionAction {
    match code {
        1 => SessionAction::Relogin,
        41 | 48 => SessionAction::Renew,
        2 | 3 | 7 | 11 | 60 | 65 | 67 | 69..=71 => SessionAction::Stop,
        _ => SessionAction::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> Option<Field> {
        Some(Field::Text(s.to_string()))
    }

    #[test]
    fn requests_are_encoded_like_the_official_clients() {
        assert_eq!(
            request("x", &[("a", "f&=o"), ("b", "b +r"), ("c", "123")]),
            "x\r\na=f%26%3Do&b=b%20%2Br&c=123"
        );
        let s = subscribe(1, 1, "MARKET:CS.D.EURUSD.CFD.IP", &["BID", "OFFER"], Mode::Merge);
        assert_eq!(
            s,
            "control\r\nLS_reqId=1&LS_op=add&LS_subId=1&LS_group=MARKET%3ACS.D.EURUSD.CFD.IP\
             &LS_schema=BID%20OFFER&LS_mode=MERGE&LS_snapshot=true"
        );
        let c = create_session("ABC123", "CST-abc|XST-def", None, "api");
        assert!(c.starts_with("create_session\r\nLS_user=ABC123&LS_password=CST-abc%7CXST-def&"), "{c}");
        assert!(c.contains("LS_cid=mgQkwtwdysogQz2BJ4Ji%20kOj2Bg"), "{c}");
        assert!(c.contains("LS_supported_diffs=&"), "{c}");
        assert_eq!(unsubscribe(2, 1), "control\r\nLS_reqId=2&LS_op=delete&LS_subId=1");
        assert!(bind_session("S1").starts_with("bind_session\r\nLS_session=S1&"));
    }

    #[test]
    fn the_specification_examples_parse() {
        use ServerMessage as M;
        assert_eq!(
            parse_line("CONOK,S73d162c183916f0dT2729905,50000,5000,*").unwrap(),
            M::ConOk {
                session: "S73d162c183916f0dT2729905".into(),
                request_limit: 50000,
                keepalive_ms: 5000,
                control_link: None
            }
        );
        assert_eq!(
            parse_line("CONOK,sid,70000,5000,host.com:90").unwrap(),
            M::ConOk {
                session: "sid".into(),
                request_limit: 70000,
                keepalive_ms: 5000,
                control_link: Some("host.com:90".into())
            }
        );
        assert_eq!(
            parse_line("CONERR,2,Requested Adapter Set not available").unwrap(),
            M::ConErr { code: 2, message: "Requested Adapter Set not available".into() }
        );
        assert_eq!(
            parse_line("REQERR,19,Specified subscription not found").unwrap_err(),
            TlcpError::MissingArguments { tag: "REQERR", expected: 3 }
        );
        assert_eq!(
            parse_line("REQERR,1,-1,Invalid account type").unwrap(),
            M::ReqErr { req_id: 1, code: -1, message: "Invalid account type".into() }
        );
        assert_eq!(parse_line("REQOK,1").unwrap(), M::ReqOk { req_id: Some(1) });
        assert_eq!(parse_line("REQOK").unwrap(), M::ReqOk { req_id: None });
        assert_eq!(
            parse_line("ERROR,68,Internal error during request processing").unwrap(),
            M::Error { code: 68, message: "Internal error during request processing".into() }
        );
        assert_eq!(parse_line("SUBOK,3,1,10").unwrap(), M::SubOk { sub_id: 3, items: 1, fields: 10 });
        assert_eq!(parse_line("SUBCMD,3,1,10,1,2").unwrap(), M::SubCmd { sub_id: 3, items: 1, fields: 10 });
        assert_eq!(parse_line("CONF,3,3.0,filtered").unwrap(), M::Conf { sub_id: 3 });
        assert_eq!(parse_line("EOS,3,1").unwrap(), M::Eos { sub_id: 3, item: 1 });
        assert_eq!(parse_line("CS,3,1").unwrap(), M::Cs { sub_id: 3, item: 1 });
        assert_eq!(parse_line("OV,3,1,5").unwrap(), M::Ov { sub_id: 3, item: 1, lost: 5 });
        assert_eq!(parse_line("UNSUB,3").unwrap(), M::Unsub { sub_id: 3 });
        assert_eq!(parse_line("PROBE").unwrap(), M::Probe);
        assert_eq!(parse_line("NOOP,sending placeholder data").unwrap(), M::Noop);
        assert_eq!(parse_line("LOOP,5000").unwrap(), M::Loop { delay_ms: 5000 });
        assert_eq!(parse_line("SYNC,14").unwrap(), M::Sync { seconds: 14 });
        assert_eq!(
            parse_line("END,8,Session count limit reached").unwrap(),
            M::End { code: 8, message: "Session count limit reached".into() }
        );
        assert_eq!(parse_line("CONS,unlimited").unwrap(), M::Cons("unlimited".into()));
        assert_eq!(parse_line("CLIENTIP,::1").unwrap(), M::ClientIp("::1".into()));
        assert_eq!(
            parse_line("SERVNAME,Lightstreamer HTTP Server").unwrap(),
            M::ServName("Lightstreamer HTTP Server".into())
        );
        assert_eq!(parse_line("PROG,11").unwrap(), M::Prog(11));
        assert_eq!(parse_line("WSOK").unwrap(), M::WsOk);
        assert_eq!(
            parse_line(
                "MSGFAIL,Orders_Sequence,4,38,The specified progressive number has been skipped by timeout"
            )
            .unwrap(),
            M::MsgFail
        );
        // The message of an error keeps its commas (it is the last argument).
        assert_eq!(
            parse_line("CONERR,64,Unexpected error: Mode MERGE, item1").unwrap(),
            M::ConErr { code: 64, message: "Unexpected error: Mode MERGE, item1".into() }
        );
        // The values of an update are left for the second-level decoder.
        assert_eq!(
            parse_line("U,3,1,20:00:33|3.04|0.0|2.41|3.67|3.03|3.04|#|#|$").unwrap(),
            M::Update { sub_id: 3, item: 1, values: "20:00:33|3.04|0.0|2.41|3.67|3.03|3.04|#|#|$".into() }
        );
    }

    #[test]
    fn broken_lines_are_errors_not_panics() {
        for line in [
            "",
            "FOO,1",
            "U",
            "U,1",
            "U,1,x,a",
            "U,-1,1,a",
            "CONOK,s,1,2",
            "SUBOK,1,1,",
            "LOOP,+5",
            "END,x,y",
            "REQOK,",
        ] {
            assert!(parse_line(line).is_err(), "{line:?} was accepted");
        }
        assert!(matches!(parse_line(&"U,1,1,".repeat(20_000)), Err(TlcpError::LineTooLong(_))));
        assert_eq!(parse_line("CONOK,S%zz,1,2,*"), Err(TlcpError::BadEncoding("S%zz".into())));
    }

    #[test]
    fn lines_split_on_crlf_and_skip_empty_ones() {
        let got: Vec<&str> = lines("SUBOK,1,1,2\r\nU,1,1,a|b\r\n\r\nPROBE\nU,1,1,|c\r\n").collect();
        assert_eq!(got, ["SUBOK,1,1,2", "U,1,1,a|b", "PROBE", "U,1,1,|c"]);
    }

    #[test]
    fn the_specification_update_stream_decodes() {
        // Sub 3, 10 fields: timestamp price change min max bid ask open close status.
        let mut s = ItemState::new(10);
        s.apply("20:00:33|3.04|0.0|2.41|3.67|3.03|3.04|#|#|$").unwrap();
        assert_eq!(s.text(0), Some("20:00:33"));
        assert_eq!(s.get(7), Some(&Field::Null));
        assert_eq!(s.get(9), Some(&Field::Text(String::new())));
        assert_eq!(s.text(9), None);
        let changed = s.apply("20:00:54|3.07|0.98|||3.06|3.07|||Suspended").unwrap();
        assert_eq!(changed, [true, true, true, false, false, true, true, false, false, true]);
        assert_eq!(s.text(3), Some("2.41"));
        assert_eq!(s.text(9), Some("Suspended"));
        s.apply("20:04:16|3.02|-0.65|||3.01|3.02|||$").unwrap();
        s.apply("20:04:40|^4|3.02|3.03|||").unwrap();
        assert_eq!(s.text(2), Some("-0.65"));
        assert_eq!(s.text(5), Some("3.02"));
        assert_eq!(s.text(6), Some("3.03"));
        s.apply("20:06:10|3.05|0.32|^7").unwrap();
        assert_eq!(s.text(1), Some("3.05"));
        assert_eq!(s.text(6), Some("3.03"));
        s.apply("20:06:49|3.08|1.31|||3.08|3.09|||").unwrap();
        assert_eq!(
            (0..10).map(|i| s.get(i).cloned()).collect::<Vec<_>>(),
            vec![
                t("20:06:49"),
                t("3.08"),
                t("1.31"),
                t("2.41"),
                t("3.67"),
                t("3.08"),
                t("3.09"),
                Some(Field::Null),
                Some(Field::Null),
                t("")
            ]
        );
    }

    #[test]
    fn escapes_nulls_and_empties() {
        let mut s = ItemState::new(1);
        s.apply("bar%c3%a0%C3%A8%25%23%24%5E").unwrap();
        assert_eq!(s.text(0), Some("baràè%#$^"));
        let mut s = ItemState::new(4);
        s.apply("#|#|$|z").unwrap();
        assert_eq!(s.get(0), Some(&Field::Null));
        assert_eq!(s.get(2), Some(&Field::Text(String::new())));
        assert_eq!(s.text(3), Some("z"));
        // "#abc" is content: only a lone # means null.
        s.apply("#abc|||").unwrap();
        assert_eq!(s.text(0), Some("#abc"));
    }

    #[test]
    fn bad_updates_leave_the_state_alone() {
        let mut s = ItemState::new(3);
        s.apply("1|2|3").unwrap();
        let before = s.clone();
        for bad in ["1|2", "1|2|3|4", "^4", "^0|1|2", "^x|1|2", "^P[]|1|2", "%zz||", "1|^3", "^2|1|1"] {
            assert!(s.apply(bad).is_err(), "{bad:?} was accepted");
            assert_eq!(s, before, "{bad:?} changed the state");
        }
        assert_eq!(s.apply("^P[]||"), Err(TlcpError::UnsupportedDiff('P')));
        s.invalidate();
        assert_eq!(s.get(0), None);
        // Unchanged markers keep an unknown value unknown.
        s.apply("|5|").unwrap();
        assert_eq!((s.get(0), s.text(1), s.get(2)), (None, Some("5"), None));
    }

    #[test]
    fn session_codes() {
        assert_eq!(conerr_action(1), SessionAction::Relogin);
        assert_eq!(conerr_action(5), SessionAction::Retry);
        assert_eq!(conerr_action(20), SessionAction::Retry);
        assert_eq!(conerr_action(48), SessionAction::Renew);
        assert_eq!(conerr_action(2), SessionAction::Stop);
        assert_eq!(conerr_action(65), SessionAction::Stop);
        assert_eq!(end_action(41), SessionAction::Renew);
        assert_eq!(end_action(31), SessionAction::Retry);
        assert_eq!(end_action(8), SessionAction::Retry);
        assert_eq!(end_action(-3), SessionAction::Retry);
        assert_eq!(end_action(65), SessionAction::Stop);
    }

    fn field() -> impl Strategy<Value = Field> {
        prop_oneof![
            1 => Just(Field::Null),
            1 => Just(Field::Text(String::new())),
            6 => "\\PC{0,12}".prop_map(Field::Text),
            2 => "[#$^|%\r\n0-9.]{1,6}".prop_map(Field::Text),
        ]
    }

    proptest! {
        #[test]
        fn values_survive_encoding(s in "\\PC{0,40}") {
            prop_assert_eq!(percent_decode(&encode_value(&s)).unwrap(), s);
        }

        /// A server's full update, then a compacted one (unchanged fields empty or run-length
        /// `^N`), decode to exactly the values sent.
        #[test]
        fn updates_decode_to_what_was_sent(first in prop::collection::vec(field(), 1..12), seed in any::<u64>()) {
            let n = first.len();
            let mut s = ItemState::new(n);
            s.apply(&encode_update_values(&first)).unwrap();
            for (i, v) in first.iter().enumerate() {
                prop_assert_eq!(s.get(i), Some(v));
            }
            // Second update: some fields change (derived from the seed), the rest unchanged.
            let second: Vec<Field> = first.iter().enumerate().map(|(i, v)| {
                if seed >> (i % 64) & 1 == 1 { Field::Text(format!("v{i}")) } else { v.clone() }
            }).collect();
            let mut tokens: Vec<String> = Vec::new();
            let mut i = 0;
            while i < n {
                if second[i] == first[i] {
                    let mut j = i;
                    while j < n && second[j] == first[j] { j += 1; }
                    if j - i > 1 && seed & 1 == 1 { tokens.push(format!("^{}", j - i)); } else { tokens.extend((i..j).map(|_| String::new())); }
                    i = j;
                } else {
                    tokens.push(encode_update_values(std::slice::from_ref(&second[i])));
                    i += 1;
                }
            }
            let changed = s.apply(&tokens.join("|")).unwrap();
            for (i, v) in second.iter().enumerate() {
                prop_assert_eq!(s.get(i), Some(v));
                prop_assert_eq!(changed[i], second[i] != first[i]);
            }
        }

        #[test]
        fn any_line_is_read_or_refused(line in "\\PC{0,60}") {
            let _ = parse_line(&line);
            let mut s = ItemState::new(5);
            let _ = s.apply(&line);
        }
    }
}
