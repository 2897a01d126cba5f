//! The IG stream: one Lightstreamer session over a WebSocket, kept alive, rebuilt when lost,
//! following the routed symbols.

use super::convert::{self, TickIds, MARKET_FIELDS, M_DELAY, TICK_FIELDS};
use super::rest::Failure;
use super::tlcp::{self, ItemState, Mode, ServerMessage, SessionAction};
use super::{IgSession, Inner};
use crate::ingest_side::IngestClassifier;
use crate::provider::{FeedCtx, Instrument, Record, TickRow};
use crate::status::{ConnStatus, FeedState};
use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tapeflow_db::backoff::Backoff;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long connecting and the session handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// A WebSocket message larger than this ends the connection (tungstenite refuses it); lines
/// longer than [`tlcp::MAX_LINE`] inside smaller messages are skipped as unreadable.
const MAX_MESSAGE: usize = 16 << 20;
/// A connection that stayed up this long after `CONOK` resets the reconnect backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Market,
    Tick,
}

impl Kind {
    fn group(self, epic: &str) -> String {
        match self {
            Kind::Market => format!("MARKET:{epic}"),
            Kind::Tick => format!("CHART:{epic}:TICK"),
        }
    }

    fn fields(self) -> &'static [&'static str] {
        match self {
            Kind::Market => &MARKET_FIELDS,
            Kind::Tick => &TICK_FIELDS,
        }
    }

    fn mode(self) -> Mode {
        match self {
            Kind::Market => Mode::Merge,
            Kind::Tick => Mode::Distinct,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubState {
    Pending,
    Active,
    Deleting,
}

struct Sub {
    epic: String,
    kind: Kind,
    state: SubState,
    item: ItemState,
    ids: TickIds,
}

/// What a connection ended with, and so what comes next.
#[derive(Debug)]
enum Outcome {
    Shutdown,
    /// `LOOP`: bind the same session on a new socket.
    Rebind(String),
    /// Open a new session at once.
    Renew {
        old: Option<String>,
        reason: String,
    },
    /// Open a new session after a backoff.
    Retry {
        old: Option<String>,
        reason: String,
    },
    /// The session tokens were refused: log in again, then open a new session.
    Relogin {
        reason: String,
    },
    /// Cannot go on as configured.
    Stop(String),
}

/// Everything that outlives one connection.
struct Feed {
    inner: Arc<Inner>,
    ctx: FeedCtx,
    status: Arc<ConnStatus>,
    instruments: watch::Receiver<Vec<Instrument>>,
    /// Symbol of each routed epic.
    symbols: HashMap<String, String>,
    classifier: IngestClassifier,
    /// Epics whose prices IG says are delayed, warned about once.
    delayed: HashSet<String>,
    zone_warned: bool,
}

/// One Lightstreamer session's subscriptions (they survive a rebind, not a new session).
#[derive(Default)]
struct Subs {
    by_id: BTreeMap<u64, Sub>,
    /// Request id of each pending add or delete, to its subscription.
    requests: HashMap<u64, u64>,
    next_sub: u64,
    next_req: u64,
    /// Items IG refused in this session (not asked for again until the next one).
    refused: BTreeSet<(String, Kind)>,
}

impl Subs {
    fn req(&mut self) -> u64 {
        self.next_req += 1;
        self.next_req
    }
}

pub(super) async fn run(
    inner: Arc<Inner>,
    ctx: FeedCtx,
    instruments: watch::Receiver<Vec<Instrument>>,
) -> anyhow::Result<()> {
    let status = ctx.status.connection("ig", "stream");
    let mut feed = Feed {
        inner,
        ctx,
        status,
        instruments,
        symbols: HashMap::new(),
        classifier: IngestClassifier::default(),
        delayed: HashSet::new(),
        zone_warned: false,
    };
    feed.run().await
}

impl Feed {
    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.ctx.shutdown.cancelled() => false,
        }
    }

    async fn run(&mut self) -> anyhow::Result<()> {
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        let mut throttle = Backoff::new(self.inner.cfg.throttle_wait, Duration::from_secs(300));
        let mut subs = Subs::default();
        let mut next: Option<String> = None; // a session to bind after LOOP
        let mut old_session: Option<String> = None;
        let mut relogins_in_a_row = 0u32;
        let mut first = true;
        self.status.set_state(FeedState::Connecting);
        loop {
            if self.ctx.shutdown.is_cancelled() {
                self.status.set_state(FeedState::Stopped);
                return Ok(());
            }
            let refusal = match self.inner.refusal() {
                // A failed renewal leaves the session in use: no need to wait then.
                Some(r) if !self.inner.has_session().await => Some(r),
                _ => None,
            };
            if let Some((left, why)) = refusal {
                // A refused login is not retried before its cooldown: IG suspends accounts
                // after repeated failed logins.
                self.status.set_state(FeedState::Failed);
                self.status.error(&why);
                tracing::warn!(wait_secs = left.as_secs(), error = %why, "IG refused the last login; waiting before trying again");
                if !self.sleep(left).await {
                    return Ok(());
                }
            }
            let session = match self.inner.session().await {
                Ok(s) => {
                    throttle.reset();
                    s
                }
                Err(e) => match e.kind {
                    Failure::Refused => {
                        tracing::error!(error = %e, "IG refused the login");
                        self.status.set_state(FeedState::Failed);
                        self.status.error(&e);
                        anyhow::bail!("{e}");
                    }
                    Failure::Throttled => {
                        let wait = throttle.next_delay();
                        tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "IG's allowance is used up; waiting");
                        self.status.set_state(FeedState::Throttled);
                        self.status.error(&e);
                        if !self.sleep(wait).await {
                            return Ok(());
                        }
                        continue;
                    }
                    Failure::TokenInvalid | Failure::Transient => {
                        let wait = backoff.next_delay();
                        tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "cannot log in to IG; retrying");
                        self.status.set_state(if first {
                            FeedState::Connecting
                        } else {
                            FeedState::Reconnecting
                        });
                        self.status.error(&e);
                        if !self.sleep(wait).await {
                            return Ok(());
                        }
                        continue;
                    }
                },
            };
            let bind = next.take();
            if bind.is_none() {
                subs = Subs::default();
            }
            let started = Instant::now();
            let (outcome, got_conok) = self.connection(&session, bind, old_session.take(), &mut subs).await;
            if got_conok {
                relogins_in_a_row = 0;
                first = false;
                if started.elapsed() >= HEALTHY_AFTER {
                    backoff.reset();
                }
            }
            match outcome {
                Outcome::Shutdown => {
                    self.status.set_state(FeedState::Stopped);
                    return Ok(());
                }
                Outcome::Rebind(sid) => {
                    tracing::debug!(session = %sid, "LOOP: rebinding the session on a new socket");
                    next = Some(sid);
                }
                Outcome::Renew { old, reason } => {
                    tracing::info!(%reason, "opening a new IG stream session");
                    self.status.reconnect();
                    self.status.set_state(FeedState::Reconnecting);
                    old_session = old;
                }
                Outcome::Retry { old, reason } => {
                    let wait = backoff.next_delay();
                    tracing::warn!(%reason, retry_in_ms = wait.as_millis() as u64, "IG stream lost; reconnecting");
                    self.status.reconnect();
                    self.status.set_state(FeedState::Reconnecting);
                    self.status.error(format!("stream lost: {reason}"));
                    old_session = old;
                    if !self.sleep(wait).await {
                        return Ok(());
                    }
                }
                Outcome::Relogin { reason } => {
                    relogins_in_a_row += 1;
                    self.inner.invalidate(session.generation).await;
                    if relogins_in_a_row > 2 {
                        let msg = format!("IG's streaming server refused fresh session tokens: {reason}");
                        tracing::error!(error = %msg, "IG stream refused");
                        self.status.set_state(FeedState::Failed);
                        self.status.error(&msg);
                        anyhow::bail!(msg);
                    }
                    tracing::info!(%reason, "IG's streaming server refused the session tokens; logging in again");
                    self.status.reconnect();
                    self.status.set_state(FeedState::Reconnecting);
                    if relogins_in_a_row > 1 && !self.sleep(backoff.next_delay()).await {
                        return Ok(());
                    }
                }
                Outcome::Stop(reason) => {
                    tracing::error!(error = %reason, "IG stream cannot go on");
                    self.status.set_state(FeedState::Failed);
                    self.status.error(&reason);
                    anyhow::bail!(reason);
                }
            }
        }
    }

    fn stream_url(&self, session: &IgSession) -> Result<String, String> {
        let base = self
            .inner
            .cfg
            .stream_url
            .clone()
            .or_else(|| session.stream_endpoint.clone())
            .ok_or("IG's session names no lightstreamerEndpoint; set TAPEFLOW_IG_STREAM_URL")?;
        let mut url =
            url::Url::parse(&base).map_err(|e| format!("stream endpoint {base:?} is not a URL: {e}"))?;
        let scheme = match url.scheme() {
            "https" | "wss" => "wss",
            "http" | "ws" => "ws",
            other => return Err(format!("stream endpoint {base:?} has an unknown scheme {other}")),
        };
        url.set_scheme(scheme).map_err(|_| format!("stream endpoint {base:?}: cannot use {scheme}"))?;
        if !url.path().ends_with("/lightstreamer") {
            let path = format!("{}/lightstreamer", url.path().trim_end_matches('/'));
            url.set_path(&path);
        }
        Ok(url.to_string())
    }

    /// One WebSocket: connect, create or bind the session, then read until it ends. Returns
    /// how it ended and whether the session was established.
    async fn connection(
        &mut self,
        session: &IgSession,
        bind: Option<String>,
        old_session: Option<String>,
        subs: &mut Subs,
    ) -> (Outcome, bool) {
        let url = match self.stream_url(session) {
            Ok(u) => u,
            Err(e) => return (Outcome::Stop(e), false),
        };
        let mut ws = match self.connect(&url).await {
            Ok(ws) => ws,
            Err(reason) => return (Outcome::Retry { old: old_session, reason }, false),
        };
        let open = match &bind {
            Some(sid) => tlcp::bind_session(sid),
            None => tlcp::create_session(
                &session.account_id,
                session.stream_password().expose(),
                old_session.as_deref(),
                if old_session.is_some() { "ws.end" } else { "api" },
            ),
        };
        for request in [tlcp::WSOK.to_string(), open] {
            if let Err(e) = ws.send(Message::text(request)).await {
                return (
                    Outcome::Retry { old: old_session, reason: format!("cannot send to {url}: {e}") },
                    false,
                );
            }
        }
        let (sid, keepalive) = match self.handshake(&mut ws).await {
            Ok(x) => x,
            Err(outcome) => return (outcome, false),
        };
        tracing::info!(session = %sid, keepalive_ms = keepalive.as_millis() as u64, rebind = bind.is_some(), %url, "IG stream connected");
        self.status.set_state(FeedState::Connected);
        let outcome = self.pump(&mut ws, &sid, keepalive, subs, session.obtained).await;
        if !matches!(outcome, Outcome::Rebind(_)) {
            let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
        }
        (outcome, true)
    }

    async fn connect(&self, url: &str) -> Result<Ws, String> {
        let mut request = url.into_client_request().map_err(|e| format!("bad stream URL {url}: {e}"))?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", tlcp::SUBPROTOCOL.parse().expect("a valid header value"));
        let config =
            WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE)).max_frame_size(Some(MAX_MESSAGE));
        match tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            tokio_tungstenite::connect_async_with_config(request, Some(config), false),
        )
        .await
        {
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(e)) => Err(format!("cannot connect to {url}: {e}")),
            Err(_) => Err(format!("no answer from {url} within {HANDSHAKE_TIMEOUT:?}")),
        }
    }

    /// Reads until `CONOK`: the session id and keep-alive.
    async fn handshake(&mut self, ws: &mut Ws) -> Result<(String, Duration), Outcome> {
        let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
        let retry = |reason: String| Outcome::Retry { old: None, reason };
        loop {
            let msg = tokio::select! {
                m = tokio::time::timeout_at(deadline, ws.next()) => m,
                _ = self.ctx.shutdown.cancelled() => return Err(Outcome::Shutdown),
            };
            let text = match msg {
                Err(_) => return Err(retry("no CONOK within the handshake timeout".into())),
                Ok(None) => return Err(retry("the server closed the socket during the handshake".into())),
                Ok(Some(Err(e))) => return Err(retry(format!("stream error during the handshake: {e}"))),
                Ok(Some(Ok(Message::Text(t)))) => t,
                Ok(Some(Ok(Message::Close(f)))) => {
                    return Err(retry(format!("the server closed the socket during the handshake: {f:?}")))
                }
                Ok(Some(Ok(_))) => continue,
            };
            for line in tlcp::lines(&text) {
                match tlcp::parse_line(line) {
                    Ok(ServerMessage::ConOk { session, keepalive_ms, .. }) => {
                        return Ok((session, Duration::from_millis(keepalive_ms.max(100))));
                    }
                    Ok(ServerMessage::ConErr { code, message }) => {
                        return Err(self.session_error("CONERR", code, &message, tlcp::conerr_action(code)));
                    }
                    Ok(ServerMessage::End { code, message }) => {
                        return Err(self.session_error("END", code, &message, tlcp::end_action(code)));
                    }
                    Ok(ServerMessage::Error { code, message }) => {
                        return Err(Outcome::Stop(format!(
                            "IG's streaming server refused the session request: ERROR {code} {message}"
                        )));
                    }
                    Ok(_) => {}
                    Err(e) => self.status.parse_error(&e, line),
                }
            }
        }
    }

    /// What `CONERR` or `END` means here. After a failed bind the next connection creates a
    /// new session (the bind is not retried).
    fn session_error(&self, tag: &str, code: i64, message: &str, action: SessionAction) -> Outcome {
        let reason = format!("{tag},{code},{message}");
        match action {
            SessionAction::Renew => Outcome::Renew { old: None, reason },
            SessionAction::Retry => Outcome::Retry { old: None, reason },
            SessionAction::Relogin => Outcome::Relogin { reason },
            SessionAction::Stop => {
                Outcome::Stop(format!("IG's streaming server ended the session: {reason}"))
            }
        }
    }

    /// The session's life: updates in, subscription changes out.
    async fn pump(
        &mut self,
        ws: &mut Ws,
        sid: &str,
        keepalive: Duration,
        subs: &mut Subs,
        logged_in: Instant,
    ) -> Outcome {
        let stall = keepalive + self.inner.cfg.stall_grace;
        let mut routed_open = true;
        // Subscriptions of a new session, or those that changed while rebinding.
        if let Err(e) = self.reconcile(ws, subs).await {
            return Outcome::Retry { old: Some(sid.to_string()), reason: e };
        }
        let mut renew_at = tokio::time::Instant::from_std(logged_in + self.inner.cfg.renew_every);
        let mut renewal: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            tokio::select! {
                biased;
                _ = self.ctx.shutdown.cancelled() => {
                    let req = subs.req();
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.send(Message::text(tlcp::destroy(req)))).await;
                    return Outcome::Shutdown;
                }
                changed = self.instruments.changed(), if routed_open => {
                    if changed.is_err() {
                        routed_open = false;
                        continue;
                    }
                    if let Err(e) = self.reconcile(ws, subs).await {
                        return Outcome::Retry { old: Some(sid.to_string()), reason: e };
                    }
                }
                _ = tokio::time::sleep_until(renew_at), if renewal.is_none() => {
                    // Renewed in the background so that reading goes on; the new tokens serve
                    // the next session and REST calls.
                    let (inner, status) = (self.inner.clone(), self.status.clone());
                    renewal = Some(tokio::spawn(async move {
                        match inner.renew().await {
                            Ok(s) => tracing::info!(generation = s.generation, "IG session renewed"),
                            Err(e) => {
                                tracing::warn!(error = %e, "IG session renewal failed; the current tokens stay in use");
                                status.error(format!("session renewal failed: {e}"));
                            }
                        }
                    }));
                }
                _ = async { if let Some(h) = renewal.as_mut() { let _ = h.await; } }, if renewal.is_some() => {
                    renewal = None;
                    renew_at = tokio::time::Instant::now() + self.inner.cfg.renew_every;
                }
                msg = tokio::time::timeout(stall, ws.next()) => {
                    let text = match msg {
                        Err(_) => return Outcome::Retry {
                            old: Some(sid.to_string()),
                            reason: format!("no message for {} ms (keep-alive {} ms): the server stalled",
                                stall.as_millis(), keepalive.as_millis()),
                        },
                        Ok(None) => return Outcome::Retry { old: Some(sid.to_string()), reason: "the server closed the stream".into() },
                        Ok(Some(Err(e))) => return Outcome::Retry { old: Some(sid.to_string()), reason: format!("stream error: {e}") },
                        Ok(Some(Ok(Message::Text(t)))) => t,
                        Ok(Some(Ok(Message::Close(f)))) => return Outcome::Retry {
                            old: Some(sid.to_string()),
                            reason: format!("the server closed the WebSocket: {f:?}"),
                        },
                        Ok(Some(Ok(Message::Binary(b)))) => {
                            self.status.parse_error(&"binary WebSocket message (TLCP is text)", &String::from_utf8_lossy(&b));
                            continue;
                        }
                        Ok(Some(Ok(_))) => continue,
                    };
                    for line in tlcp::lines(&text) {
                        if let Some(outcome) = self.line(ws, sid, line, subs).await {
                            return outcome;
                        }
                    }
                }
            }
        }
    }

    /// Subscribes what is routed and not subscribed, unsubscribes what is no longer routed.
    async fn reconcile(&mut self, ws: &mut Ws, subs: &mut Subs) -> Result<(), String> {
        let routed = self.instruments.borrow_and_update().clone();
        let mut wanted: BTreeMap<(String, Kind), ()> = BTreeMap::new();
        self.symbols.clear();
        let mut over: Vec<String> = Vec::new();
        for inst in &routed {
            let epic = inst.provider_ref.trim().to_string();
            if epic.is_empty() {
                continue;
            }
            if let Some(other) = self.symbols.get(&epic) {
                tracing::warn!(epic = %epic, symbol = %inst.symbol, kept = %other, "two symbols have the same IG epic; feeding the first");
                continue;
            }
            if wanted.len() + 2 > self.inner.cfg.max_subscriptions {
                over.push(inst.symbol.clone());
                continue;
            }
            self.symbols.insert(epic.clone(), inst.symbol.clone());
            wanted.insert((epic.clone(), Kind::Market), ());
            wanted.insert((epic, Kind::Tick), ());
        }
        if !over.is_empty() {
            let msg = format!(
                "more IG symbols than {} subscriptions allow (two per epic); not fed: {}",
                self.inner.cfg.max_subscriptions,
                over.join(", ")
            );
            tracing::error!(error = %msg, "IG subscription limit");
            self.status.error(msg);
        }
        self.status.set_symbols(self.symbols.len());
        subs.refused.retain(|k| wanted.contains_key(k));
        let mut have: BTreeSet<(String, Kind)> = BTreeSet::new();
        let mut drop: Vec<u64> = Vec::new();
        for (id, s) in &subs.by_id {
            if s.state == SubState::Deleting {
                continue;
            }
            let key = (s.epic.clone(), s.kind);
            if wanted.contains_key(&key) {
                have.insert(key);
            } else {
                drop.push(*id);
            }
        }
        for id in drop {
            let req = subs.req();
            if let Some(s) = subs.by_id.get_mut(&id) {
                tracing::info!(group = %s.kind.group(&s.epic), "unsubscribing");
                s.state = SubState::Deleting;
            }
            subs.requests.insert(req, id);
            ws.send(Message::text(tlcp::unsubscribe(req, id)))
                .await
                .map_err(|e| format!("cannot unsubscribe: {e}"))?;
        }
        for (epic, kind) in wanted.into_keys() {
            if have.contains(&(epic.clone(), kind)) || subs.refused.contains(&(epic.clone(), kind)) {
                continue;
            }
            subs.next_sub += 1;
            let (id, req) = (subs.next_sub, subs.req());
            let group = kind.group(&epic);
            tracing::info!(%group, sub = id, "subscribing");
            subs.by_id.insert(
                id,
                Sub {
                    epic,
                    kind,
                    state: SubState::Pending,
                    item: ItemState::new(kind.fields().len()),
                    ids: TickIds::default(),
                },
            );
            subs.requests.insert(req, id);
            ws.send(Message::text(tlcp::subscribe(req, id, &group, kind.fields(), kind.mode())))
                .await
                .map_err(|e| format!("cannot subscribe {group}: {e}"))?;
        }
        Ok(())
    }

    /// Handles one server line; `Some` ends the connection.
    async fn line(&mut self, ws: &mut Ws, sid: &str, line: &str, subs: &mut Subs) -> Option<Outcome> {
        let msg = match tlcp::parse_line(line) {
            Ok(m) => m,
            Err(e) => {
                self.status.parse_error(&e, line);
                return None;
            }
        };
        let old = Some(sid.to_string());
        match msg {
            ServerMessage::Update { sub_id, item, values } => {
                if let Err(outcome) = self.update(sub_id, item, &values, line, subs).await {
                    return Some(outcome);
                }
            }
            ServerMessage::Probe
            | ServerMessage::Noop
            | ServerMessage::Sync { .. }
            | ServerMessage::WsOk
            | ServerMessage::ServName(_)
            | ServerMessage::ClientIp(_)
            | ServerMessage::Cons(_)
            | ServerMessage::Prog(_)
            | ServerMessage::Conf { .. }
            | ServerMessage::ReqOk { .. }
            | ServerMessage::MsgDone
            | ServerMessage::MsgFail => {}
            ServerMessage::SubOk { sub_id, items, fields } => {
                let Some(s) = subs.by_id.get_mut(&sub_id) else {
                    self.status.parse_error(&"SUBOK for a subscription never requested", line);
                    return None;
                };
                if items != 1 || fields as usize != s.kind.fields().len() {
                    // The server would number the fields differently from what was asked:
                    // reading them by position would be wrong.
                    let group = s.kind.group(&s.epic);
                    let msg = format!(
                        "IG answered {group} with {items} items and {fields} fields, not 1 and {}",
                        s.kind.fields().len()
                    );
                    tracing::error!(error = %msg, "subscription not used");
                    self.status.error(&msg);
                    subs.refused.insert((s.epic.clone(), s.kind));
                    s.state = SubState::Deleting;
                    let req = subs.req();
                    subs.requests.insert(req, sub_id);
                    if ws.send(Message::text(tlcp::unsubscribe(req, sub_id))).await.is_err() {
                        return Some(Outcome::Retry { old, reason: "cannot unsubscribe".into() });
                    }
                    return None;
                }
                // A new subscription starts from its snapshot: full values, fresh id counters.
                s.state = SubState::Active;
                s.item = ItemState::new(s.kind.fields().len());
                s.ids = TickIds::default();
                tracing::debug!(group = %s.kind.group(&s.epic), "subscribed");
            }
            ServerMessage::SubCmd { .. } => {
                self.status.parse_error(&"SUBCMD for a subscription not in COMMAND mode", line)
            }
            ServerMessage::ReqErr { req_id, code, message } => {
                let Some(sub_id) = subs.requests.remove(&req_id) else {
                    tracing::warn!(req_id, code, %message, "IG refused a request");
                    return None;
                };
                if let Some(s) = subs.by_id.remove(&sub_id) {
                    if s.state != SubState::Deleting {
                        let group = s.kind.group(&s.epic);
                        let msg = format!("IG refused the subscription {group}: {code} {message}");
                        tracing::error!(%group, code, %message, "IG refused the subscription");
                        self.status.error(&msg);
                        subs.refused.insert((s.epic, s.kind));
                    }
                }
            }
            ServerMessage::Unsub { sub_id } => {
                subs.by_id.remove(&sub_id);
                subs.requests.retain(|_, s| *s != sub_id);
            }
            ServerMessage::Eos { sub_id, .. } => tracing::debug!(sub_id, "snapshot delivered"),
            ServerMessage::Cs { sub_id, .. } => {
                if let Some(s) = subs.by_id.get_mut(&sub_id) {
                    s.item.invalidate();
                }
            }
            ServerMessage::Ov { sub_id, lost, .. } => {
                let group = subs
                    .by_id
                    .get(&sub_id)
                    .map(|s| s.kind.group(&s.epic))
                    .unwrap_or_else(|| format!("subscription {sub_id}"));
                let msg = format!("IG dropped {lost} updates of {group} (the client fell behind)");
                tracing::warn!(%group, lost, "IG dropped updates");
                metrics::counter!("tapeflow_feed_ig_updates_lost_total").increment(lost);
                self.status.error(msg);
            }
            ServerMessage::Loop { .. } => return Some(Outcome::Rebind(sid.to_string())),
            ServerMessage::End { code, message } => {
                let outcome = self.session_error("END", code, &message, tlcp::end_action(code));
                return Some(match outcome {
                    Outcome::Renew { reason, .. } => Outcome::Renew { old, reason },
                    Outcome::Retry { reason, .. } => Outcome::Retry { old, reason },
                    o => o,
                });
            }
            ServerMessage::ConErr { code, message } => {
                return Some(self.session_error("CONERR", code, &message, tlcp::conerr_action(code)));
            }
            ServerMessage::Error { code, message } => {
                let msg = format!("IG's streaming server refused a request: ERROR {code} {message}");
                tracing::error!(code, %message, "IG refused a request");
                self.status.error(msg);
            }
            ServerMessage::ConOk { .. } => self.status.parse_error(&"CONOK on a session already open", line),
        }
        None
    }

    /// A `U` line: new values of a subscribed item, turned into a quote or a tick.
    async fn update(
        &mut self,
        sub_id: u64,
        item: u64,
        values: &str,
        line: &str,
        subs: &mut Subs,
    ) -> Result<(), Outcome> {
        let received = Utc::now();
        let Some(s) = subs.by_id.get_mut(&sub_id) else {
            self.status.parse_error(&"update for a subscription never requested", line);
            return Ok(());
        };
        if s.state == SubState::Deleting {
            return Ok(());
        }
        if item != 1 {
            self.status.parse_error(&format!("update for item {item} of a one-item subscription"), line);
            return Ok(());
        }
        s.state = SubState::Active;
        let changed = match s.item.apply(values) {
            Ok(c) => c,
            Err(e) => {
                // Later updates send only changes against values now unknown.
                s.item.invalidate();
                self.status.parse_error(&e, line);
                return Ok(());
            }
        };
        let Some(symbol) = self.symbols.get(&s.epic).cloned() else { return Ok(()) };
        match s.kind {
            Kind::Market => {
                if s.item.text(M_DELAY) == Some("1") && self.delayed.insert(s.epic.clone()) {
                    tracing::warn!(epic = %s.epic, %symbol, "IG marks this market's prices as delayed");
                }
                match convert::market_quote(&symbol, &s.item, &changed, self.inner.cfg.time_zone, received) {
                    Ok(Some(q)) => {
                        if convert::implausible_lag(q.time, received) && !self.zone_warned {
                            self.zone_warned = true;
                            tracing::warn!(%symbol, update_time = %q.time, %received,
                                "IG's UPDATE_TIME is far from the receipt time: check TAPEFLOW_IG_TIME_ZONE");
                        }
                        self.status.message(Some(q.time));
                        self.classifier.on_quote(&symbol, q.bid, q.ask);
                        self.ctx.sink.send(Record::Quote(q)).await.map_err(|_| Outcome::Shutdown)?;
                    }
                    Ok(None) => self.status.message(None),
                    Err(e) => self.status.parse_error(&e, line),
                }
            }
            Kind::Tick => match convert::chart_tick(&s.item, &mut s.ids) {
                Ok(Some(t)) => {
                    if let Some((bid, ofr)) = t.quote {
                        self.classifier.on_quote(&symbol, bid, ofr);
                    }
                    let (side, source) = self.classifier.classify(&symbol, t.price, None);
                    self.status.message(Some(t.time));
                    let row = TickRow {
                        time: t.time,
                        symbol,
                        price: t.price,
                        size: t.size,
                        side: side.code(),
                        side_source: source.as_str(),
                        trade_id: t.trade_id,
                        exchange: Some(convert::EXCHANGE.to_string()),
                        conditions: t.mid.then(|| vec!["mid".to_string()]),
                    };
                    self.ctx.sink.send(Record::Tick(row)).await.map_err(|_| Outcome::Shutdown)?;
                }
                Ok(None) => self.status.message(None),
                Err(e) => self.status.parse_error(&e, line),
            },
        }
        Ok(())
    }
}
