//! The CLOB REST client of live trading: order post under L2 headers, order lookup by id (the
//! order's EIP-712 hash), cancel, heartbeats while orders are open, `GET /version` (which
//! exchange domain to sign for) and a market's fee parameters. API credentials come from the
//! environment or are derived with L1 headers at start.
//!
//! Live trading needs `TAPEFLOW_POLYMARKET_LIVE=true` and `POLYMARKET_PRIVATE_KEY`; secrets are
//! never logged (`Debug` of the configuration and credentials redacts them).

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::auth::{l1_headers, l2_headers, ApiCreds};
use super::rounding::{marketable_amounts, Tick};
use super::sign::{keccak, to_hex, Address, Domain, Order, Side, SignatureType, Wallet, U256};
use crate::broker::BrokerError;

/// The venue's CLOB endpoint.
pub const DEFAULT_CLOB_URL: &str = "https://clob.polymarket.com";

/// Live trading settings, from the environment.
#[derive(Clone)]
pub struct LiveConfig {
    pub base_url: String,
    pub chain_id: u64,
    pub wallet: Wallet,
    /// The address holding the funds (the order's maker): the signer for EOA orders, the
    /// proxy, Safe or deposit wallet otherwise.
    pub funder: Address,
    pub signature_type: SignatureType,
    /// None: derived (or created) with L1 headers at start.
    pub creds: Option<ApiCreds>,
    pub timeout: Duration,
    /// Heartbeats are sent this often while an order is open.
    pub heartbeat_every: Duration,
}

impl std::fmt::Debug for LiveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveConfig")
            .field("base_url", &self.base_url)
            .field("chain_id", &self.chain_id)
            .field("signer", &self.wallet.address())
            .field("funder", &self.funder)
            .field("signature_type", &self.signature_type)
            .field("creds", &self.creds)
            .field("timeout", &self.timeout)
            .field("heartbeat_every", &self.heartbeat_every)
            .finish()
    }
}

fn var(get: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

impl LiveConfig {
    /// None unless `TAPEFLOW_POLYMARKET_LIVE=true`; then the keys are required.
    pub fn from_env() -> anyhow::Result<Option<LiveConfig>> {
        Self::from_vars(|n| std::env::var(n).ok())
    }

    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<LiveConfig>> {
        let live = match var(&get, "TAPEFLOW_POLYMARKET_LIVE").as_deref() {
            None | Some("false") | Some("0") | Some("off") => false,
            Some("true") | Some("1") | Some("on") => true,
            Some(other) => anyhow::bail!("TAPEFLOW_POLYMARKET_LIVE={other:?}: true or false"),
        };
        if !live {
            return Ok(None);
        }
        let key = var(&get, "POLYMARKET_PRIVATE_KEY").ok_or_else(|| {
            anyhow::anyhow!("POLYMARKET_PRIVATE_KEY is not set (required for live Polymarket trading)")
        })?;
        let wallet = Wallet::from_hex(&key).map_err(|e| anyhow::anyhow!("POLYMARKET_PRIVATE_KEY: {e}"))?;
        let code: u8 = match var(&get, "POLYMARKET_SIGNATURE_TYPE") {
            None => 0,
            Some(v) => {
                v.parse().map_err(|_| anyhow::anyhow!("POLYMARKET_SIGNATURE_TYPE={v:?}: 0, 1, 2 or 3"))?
            }
        };
        let signature_type = SignatureType::from_code(code).ok_or_else(|| {
            anyhow::anyhow!(
                "POLYMARKET_SIGNATURE_TYPE={code}: 0 (EOA), 1 (proxy), 2 (Safe) or 3 (deposit wallet)"
            )
        })?;
        let funder = match var(&get, "POLYMARKET_FUNDER") {
            Some(a) => Address::from_str(&a).map_err(|e| anyhow::anyhow!("POLYMARKET_FUNDER: {e}"))?,
            None if signature_type == SignatureType::Eoa => wallet.address(),
            None => anyhow::bail!("POLYMARKET_FUNDER is required with POLYMARKET_SIGNATURE_TYPE={code}"),
        };
        let creds = match (
            var(&get, "POLYMARKET_API_KEY"),
            var(&get, "POLYMARKET_API_SECRET"),
            var(&get, "POLYMARKET_API_PASSPHRASE"),
        ) {
            (Some(key), Some(secret), Some(passphrase)) => Some(ApiCreds { key, secret, passphrase }),
            (None, None, None) => None,
            _ => anyhow::bail!("POLYMARKET_API_KEY, POLYMARKET_API_SECRET and POLYMARKET_API_PASSPHRASE go together (or none: derived)"),
        };
        let num = |name: &str, default: u64| -> anyhow::Result<u64> {
            match var(&get, name) {
                None => Ok(default),
                Some(v) => v.parse().map_err(|e| anyhow::anyhow!("{name}={v:?}: {e}")),
            }
        };
        Ok(Some(LiveConfig {
            base_url: var(&get, "TAPEFLOW_POLYMARKET_CLOB_URL")
                .unwrap_or_else(|| DEFAULT_CLOB_URL.into())
                .trim_end_matches('/')
                .to_string(),
            chain_id: num("TAPEFLOW_POLYMARKET_CHAIN_ID", super::sign::POLYGON)?,
            wallet,
            funder,
            signature_type,
            creds,
            timeout: Duration::from_millis(num("TAPEFLOW_POLYMARKET_TIMEOUT_MS", 10_000)?.max(50)),
            heartbeat_every: Duration::from_millis(num("TAPEFLOW_POLYMARKET_HEARTBEAT_MS", 5_000)?.max(50)),
        }))
    }
}

/// A signed order as stored (before sending) and posted: the same bytes go out after a
/// restart, so the venue sees one order hash per leg.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedOrder {
    /// The `order` object of `POST /order`.
    pub order: Value,
    /// The EIP-712 hash: the venue's order id.
    pub hash: String,
    /// The exchange domain version it was signed for.
    pub version: String,
}

/// What a leg asks for.
#[derive(Debug, Clone)]
pub struct LegSpec<'a> {
    pub client_order_id: &'a str,
    pub token_id: &'a str,
    pub side: Side,
    pub shares: Decimal,
    pub limit: Decimal,
    pub tick: Decimal,
    pub neg_risk: bool,
}

/// The salt of a leg: derived from its client order id (≤ 2^53 − 1, a JSON number).
pub fn salt_of(client_order_id: &str) -> u64 {
    let h = keccak(client_order_id.as_bytes());
    u64::from_be_bytes(h[..8].try_into().expect("8 bytes")) & ((1u64 << 53) - 1)
}

/// Signs a marketable (FOK/FAK) order for a leg.
pub fn sign_leg(
    cfg: &LiveConfig,
    leg: &LegSpec<'_>,
    version: &str,
    timestamp_ms: u64,
) -> anyhow::Result<SignedOrder> {
    let tick = Tick::new(leg.tick)?;
    let amounts = marketable_amounts(leg.side, leg.shares, leg.limit, tick)?;
    let (maker_amount, taker_amount) = amounts.base_units();
    let order = Order {
        salt: salt_of(leg.client_order_id),
        maker: cfg.funder,
        signer: cfg.wallet.address(),
        token_id: U256::from_str(leg.token_id).map_err(|e| anyhow::anyhow!("token {}: {e}", leg.token_id))?,
        maker_amount: U256::from_u128(maker_amount),
        taker_amount: U256::from_u128(taker_amount),
        side: leg.side,
        signature_type: cfg.signature_type,
        timestamp: timestamp_ms,
        metadata: [0; 32],
        builder: [0; 32],
    };
    let domain = Domain::exchange(cfg.chain_id, leg.neg_risk, version);
    let signature = cfg.wallet.sign_order(&order, &domain);
    let zero = to_hex(&[0u8; 32]);
    Ok(SignedOrder {
        order: json!({
            "salt": order.salt,
            "maker": order.maker.to_string(),
            "signer": order.signer.to_string(),
            "tokenId": order.token_id.to_decimal(),
            "makerAmount": maker_amount.to_string(),
            "takerAmount": taker_amount.to_string(),
            "side": leg.side.as_str(),
            "signatureType": cfg.signature_type as u8,
            "timestamp": timestamp_ms.to_string(),
            "expiration": "0",
            "metadata": zero,
            "builder": zero,
            "signature": signature,
        }),
        hash: to_hex(&order.hash(&domain)),
        version: version.to_string(),
    })
}

/// What the venue did with a posted order.
#[derive(Debug, Clone, PartialEq)]
pub enum Posted {
    /// Accepted: `status` is the venue's (matched, live, delayed, unmatched); the amounts are
    /// what matched so far, in whole units (collateral and shares).
    Accepted { order_id: String, status: String, making: Decimal, taking: Decimal, raw: Value },
    /// A FOK (or FAK) that found nothing to match: cancelled, nothing filled.
    Killed { message: String, raw: Value },
    /// The order was signed for another exchange version: re-sign and post once more.
    VersionMismatch { message: String },
}

/// An order as `GET /data/order/{id}` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct VenueOrder {
    pub id: String,
    pub status: String,
    pub size_matched: Decimal,
    pub price: Decimal,
    pub raw: Value,
}

fn dec(v: &Value) -> Option<Decimal> {
    match v {
        Value::String(s) => Decimal::from_str(s.trim()).or_else(|_| Decimal::from_scientific(s.trim())).ok(),
        Value::Number(n) => Decimal::from_str(&n.to_string()).ok(),
        _ => None,
    }
}

fn message_of(v: &Value) -> String {
    ["errorMsg", "error", "message"]
        .iter()
        .filter_map(|k| v.get(k).and_then(Value::as_str))
        .find(|s| !s.is_empty())
        .unwrap_or_default()
        .to_string()
}

/// Reads the answer of `POST /order`.
pub fn parse_post(status: StatusCode, body: &str) -> Result<Posted, BrokerError> {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| json!({ "error": body }));
    let message = message_of(&v);
    let lower = message.to_ascii_lowercase();
    if lower.contains("order_version_mismatch") || lower.contains("version mismatch") {
        return Ok(Posted::VersionMismatch { message });
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(BrokerError::Transient(format!("{status}: {message}")));
    }
    let success =
        v.get("success").and_then(Value::as_bool).unwrap_or(status.is_success() && message.is_empty());
    if success {
        let order_id =
            v.get("orderID").or_else(|| v.get("orderId")).and_then(Value::as_str).unwrap_or_default();
        return Ok(Posted::Accepted {
            order_id: order_id.to_string(),
            status: v.get("status").and_then(Value::as_str).unwrap_or("live").to_ascii_lowercase(),
            making: v.get("makingAmount").and_then(dec).unwrap_or_default(),
            taking: v.get("takingAmount").and_then(dec).unwrap_or_default(),
            raw: v,
        });
    }
    // The venue's words for a marketable order that matched nothing.
    if (lower.contains("fok") && (lower.contains("killed") || lower.contains("fully filled")))
        || lower.contains("no orders found to match")
        || lower.contains("no match")
    {
        return Ok(Posted::Killed { message, raw: v });
    }
    if lower.contains("duplicate") || lower.contains("already exists") {
        return Err(BrokerError::Duplicate(message));
    }
    Err(BrokerError::Rejected { status: status.as_u16(), message })
}

/// Reads `GET /data/order/{id}`: None when the venue has no such order.
pub fn parse_order(body: &str) -> Option<VenueOrder> {
    let v: Value = serde_json::from_str(body).ok()?;
    let id = v.get("id").and_then(Value::as_str)?.to_string();
    Some(VenueOrder {
        id,
        status: v.get("status").and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase(),
        size_matched: v.get("size_matched").and_then(dec).unwrap_or_default(),
        price: v.get("price").and_then(dec).unwrap_or_default(),
        raw: v,
    })
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// The CLOB client. Cheap to share (`Arc`).
pub struct Clob {
    cfg: LiveConfig,
    http: reqwest::Client,
    creds: ApiCreds,
    version: Mutex<String>,
    open: Arc<AtomicUsize>,
}

/// Keeps heartbeats going while it lives (one per open order or batch of legs).
pub struct OpenOrders(Arc<AtomicUsize>);

impl Drop for OpenOrders {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn transient(e: reqwest::Error) -> BrokerError {
    BrokerError::Transient(format!("CLOB request failed: {e}"))
}

impl Clob {
    /// Connects: the API credentials (derived when not configured), the exchange version,
    /// and the heartbeat task.
    pub async fn connect(cfg: LiveConfig) -> anyhow::Result<Arc<Clob>> {
        let http = reqwest::Client::builder().timeout(cfg.timeout).build()?;
        let creds = match cfg.creds.clone() {
            Some(c) => c,
            None => derive_creds(&http, &cfg).await?,
        };
        let clob = Arc::new(Clob {
            cfg,
            http,
            creds,
            version: Mutex::new("2".into()),
            open: Arc::new(AtomicUsize::new(0)),
        });
        let v = clob.refresh_version().await.map_err(|e| anyhow::anyhow!("CLOB version: {e}"))?;
        tracing::info!(signer = %clob.cfg.wallet.address(), funder = %clob.cfg.funder, version = %v,
            url = %clob.cfg.base_url, "live Polymarket trading");
        let weak = Arc::downgrade(&clob);
        tokio::spawn(async move { heartbeats(weak).await });
        Ok(clob)
    }

    pub fn config(&self) -> &LiveConfig {
        &self.cfg
    }

    /// The exchange version orders are signed for.
    pub fn version(&self) -> String {
        self.version.lock().expect("version lock").clone()
    }

    /// Marks orders open (heartbeats run) until the guard is dropped.
    pub fn open_orders(&self) -> OpenOrders {
        self.open.fetch_add(1, Ordering::SeqCst);
        OpenOrders(self.open.clone())
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, String), BrokerError> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let headers =
            l2_headers(self.cfg.wallet.address(), &self.creds, now_secs(), method.as_str(), path, &body)
                .map_err(|e| BrokerError::Rejected { status: 0, message: e.to_string() })?;
        let mut req = self.http.request(method, format!("{}{path}", self.cfg.base_url));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if !body.is_empty() {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().await.map_err(transient)?;
        let status = resp.status();
        let text = resp.text().await.map_err(transient)?;
        Ok((status, text))
    }

    /// `GET /version`: `{"version": N}` (a number or a string).
    pub async fn refresh_version(&self) -> Result<String, BrokerError> {
        let resp = self.http.get(format!("{}/version", self.cfg.base_url)).send().await.map_err(transient)?;
        let status = resp.status();
        let text = resp.text().await.map_err(transient)?;
        if !status.is_success() {
            return Err(BrokerError::Transient(format!("GET /version: {status} {text}")));
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.trim().into()));
        let version = match v.get("version").unwrap_or(&v) {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.trim().trim_start_matches('v').to_string(),
            other => return Err(BrokerError::Transient(format!("GET /version: unexpected {other}"))),
        };
        *self.version.lock().expect("version lock") = version.clone();
        Ok(version)
    }

    /// A market's taker fee parameters (`fd: {r, e}` of `GET /clob-markets/{condition}`).
    pub async fn fee_params(&self, condition_id: &str) -> Result<Option<(Decimal, u32)>, BrokerError> {
        let url = format!("{}/clob-markets/{condition_id}", self.cfg.base_url);
        let resp = self.http.get(url).send().await.map_err(transient)?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let v: Value = resp.json().await.map_err(transient)?;
        let fd = v.get("fd").unwrap_or(&Value::Null);
        Ok(fd.get("r").and_then(dec).map(|r| {
            (r, fd.get("e").and_then(dec).and_then(|e| u32::try_from(e.trunc().mantissa()).ok()).unwrap_or(1))
        }))
    }

    /// `POST /order` of a signed order.
    pub async fn post(&self, signed: &SignedOrder, order_type: &str) -> Result<Posted, BrokerError> {
        let body = json!({ "order": signed.order, "owner": self.creds.key, "orderType": order_type });
        let (status, text) = self.request(Method::POST, "/order", Some(&body)).await?;
        parse_post(status, &text)
    }

    /// `GET /data/order/{id}`.
    pub async fn order(&self, id: &str) -> Result<Option<VenueOrder>, BrokerError> {
        let (status, text) = self.request(Method::GET, &format!("/data/order/{id}"), None).await?;
        match status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(parse_order(&text)),
            s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
                Err(BrokerError::Transient(format!("order lookup: {s} {text}")))
            }
            s => Err(BrokerError::Rejected { status: s.as_u16(), message: text }),
        }
    }

    /// `DELETE /order` of one order id.
    pub async fn cancel(&self, id: &str) -> Result<(), BrokerError> {
        let (status, text) = self.request(Method::DELETE, "/order", Some(&json!({ "orderID": id }))).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(BrokerError::Rejected { status: status.as_u16(), message: text })
        }
    }

    /// `POST /v1/heartbeats` chaining the previous id.
    async fn heartbeat(&self, previous: Option<String>) -> Result<Option<String>, BrokerError> {
        let (status, text) =
            self.request(Method::POST, "/v1/heartbeats", Some(&json!({ "heartbeat_id": previous }))).await?;
        if !status.is_success() {
            return Err(BrokerError::Transient(format!("heartbeat: {status} {text}")));
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(v.get("heartbeat_id").and_then(Value::as_str).map(str::to_string))
    }
}

/// While any order is open, a heartbeat every `heartbeat_every` (the venue cancels open
/// orders some 10 s after heartbeats stop, so a crashed executor leaves nothing resting).
async fn heartbeats(clob: std::sync::Weak<Clob>) {
    let mut previous: Option<String> = None;
    loop {
        let Some(c) = clob.upgrade() else { return };
        let every = c.cfg.heartbeat_every;
        if c.open.load(Ordering::SeqCst) > 0 {
            match c.heartbeat(previous.clone()).await {
                Ok(id) => previous = id.or(previous),
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
        } else {
            previous = None;
        }
        drop(c);
        tokio::time::sleep(every).await;
    }
}

/// Derives the account's API key with L1 headers (`GET /auth/derive-api-key`), creating one
/// (`POST /auth/api-key`) when there is none.
async fn derive_creds(http: &reqwest::Client, cfg: &LiveConfig) -> anyhow::Result<ApiCreds> {
    for (method, path) in [(Method::GET, "/auth/derive-api-key"), (Method::POST, "/auth/api-key")] {
        let mut req = http.request(method.clone(), format!("{}{path}", cfg.base_url));
        for (k, v) in l1_headers(&cfg.wallet, cfg.chain_id, now_secs(), 0) {
            req = req.header(k, v);
        }
        let resp = req.send().await.map_err(|e| anyhow::anyhow!("{method} {path}: {e}"))?;
        let status = resp.status();
        if status.is_success() {
            return resp.json::<ApiCreds>().await.map_err(|e| anyhow::anyhow!("{method} {path}: {e}"));
        }
        tracing::info!(%status, path, "API key not derived; trying the next way");
    }
    anyhow::bail!("the CLOB gave no API key for {} (derive and create both refused)", cfg.wallet.address())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::polymarket::sign::recover;

    use tapeflow_db::config::lookup as vars;

    const KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

    #[test]
    fn live_needs_explicit_configuration() {
        assert!(LiveConfig::from_vars(vars(&[("POLYMARKET_PRIVATE_KEY", KEY)])).unwrap().is_none());
        let e = LiveConfig::from_vars(vars(&[("TAPEFLOW_POLYMARKET_LIVE", "true")])).unwrap_err();
        assert!(e.to_string().contains("POLYMARKET_PRIVATE_KEY"));
        let e = LiveConfig::from_vars(vars(&[
            ("TAPEFLOW_POLYMARKET_LIVE", "true"),
            ("POLYMARKET_PRIVATE_KEY", KEY),
            ("POLYMARKET_SIGNATURE_TYPE", "2"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("POLYMARKET_FUNDER"));
        let c = LiveConfig::from_vars(vars(&[
            ("TAPEFLOW_POLYMARKET_LIVE", "true"),
            ("POLYMARKET_PRIVATE_KEY", KEY),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.funder, c.wallet.address());
        assert_eq!((c.chain_id, c.base_url.as_str()), (137, DEFAULT_CLOB_URL));
        assert!(!format!("{c:?}").contains("ac0974"), "the key must not be printed");
        let e = LiveConfig::from_vars(vars(&[
            ("TAPEFLOW_POLYMARKET_LIVE", "true"),
            ("POLYMARKET_PRIVATE_KEY", "0x12"),
        ]))
        .unwrap_err();
        assert!(!e.to_string().contains("0x12"));
    }

    #[test]
    fn a_signed_leg_is_deterministic_and_recovers_its_signer() {
        let c = LiveConfig::from_vars(vars(&[
            ("TAPEFLOW_POLYMARKET_LIVE", "true"),
            ("POLYMARKET_PRIVATE_KEY", KEY),
        ]))
        .unwrap()
        .unwrap();
        let leg = LegSpec {
            client_order_id: "arb-7-live-0-entry",
            token_id: "1234",
            side: Side::Buy,
            shares: "12.34".parse().unwrap(),
            limit: "0.37".parse().unwrap(),
            tick: "0.01".parse().unwrap(),
            neg_risk: false,
        };
        let a = sign_leg(&c, &leg, "2", 1710000000000).unwrap();
        assert_eq!(a, sign_leg(&c, &leg, "2", 1710000000000).unwrap());
        assert_eq!(a.order["makerAmount"], "4570000");
        assert_eq!(a.order["takerAmount"], "12351300");
        assert_eq!(a.order["salt"].as_u64().unwrap(), salt_of("arb-7-live-0-entry"));
        assert!(salt_of("x") < 1 << 53);
        // The venue's check: rebuild the struct from the body, hash it, recover the signer.
        let o = &a.order;
        let order = Order {
            salt: o["salt"].as_u64().unwrap(),
            maker: o["maker"].as_str().unwrap().parse().unwrap(),
            signer: o["signer"].as_str().unwrap().parse().unwrap(),
            token_id: o["tokenId"].as_str().unwrap().parse().unwrap(),
            maker_amount: o["makerAmount"].as_str().unwrap().parse().unwrap(),
            taker_amount: o["takerAmount"].as_str().unwrap().parse().unwrap(),
            side: Side::Buy,
            signature_type: SignatureType::Eoa,
            timestamp: o["timestamp"].as_str().unwrap().parse().unwrap(),
            metadata: [0; 32],
            builder: [0; 32],
        };
        let domain = Domain::exchange(137, false, "2");
        assert_eq!(to_hex(&order.hash(&domain)), a.hash);
        assert_eq!(
            recover(&order.hash(&domain), o["signature"].as_str().unwrap()).unwrap(),
            c.wallet.address()
        );
        // Version 3 signs another hash.
        assert_ne!(sign_leg(&c, &leg, "3", 1710000000000).unwrap().hash, a.hash);
    }

    /// A capture of `shared/data/c_protocol/polymarket` (beside the repository).
    fn capture(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data/c_protocol/polymarket/nautilus_crates_test_data")
            .join(format!("{name}.json"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn post_answers() {
        let ok = r#"{"success": true, "orderID": "0xab", "status": "matched", "makingAmount": "4.57", "takingAmount": "12.3513", "errorMsg": ""}"#;
        match parse_post(StatusCode::OK, ok).unwrap() {
            Posted::Accepted { order_id, status, making, taking, .. } => {
                assert_eq!((order_id.as_str(), status.as_str()), ("0xab", "matched"));
                assert_eq!((making, taking), ("4.57".parse().unwrap(), "12.3513".parse().unwrap()));
            }
            other => panic!("{other:?}"),
        }
        let killed = r#"{"success": false, "errorMsg": "order couldn't be fully filled. FOK orders are fully filled or killed."}"#;
        assert!(matches!(parse_post(StatusCode::BAD_REQUEST, killed).unwrap(), Posted::Killed { .. }));
        let v = r#"{"error": "order_version_mismatch"}"#;
        assert!(matches!(parse_post(StatusCode::BAD_REQUEST, v).unwrap(), Posted::VersionMismatch { .. }));
        let failed = &capture("http_order_response_failed");
        assert!(matches!(parse_post(StatusCode::OK, failed), Err(BrokerError::Rejected { .. })));
        let e500 = &capture("http_order_response_error_500");
        assert!(matches!(
            parse_post(StatusCode::INTERNAL_SERVER_ERROR, e500),
            Err(BrokerError::Transient(_))
        ));
        let o = &capture("http_open_order_sell_fok");
        let o = parse_order(o).unwrap();
        assert_eq!((o.status.as_str(), o.size_matched), ("matched", "50".parse().unwrap()));
        assert!(parse_order("null").is_none());
    }
}
