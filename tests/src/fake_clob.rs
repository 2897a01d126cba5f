//! A fake Polymarket CLOB (REST) for tests of the polymarket broker: `GET /version`,
//! `GET /book`, `GET /clob-markets/{condition}` (fee parameters), L1 `GET /auth/derive-api-key`,
//! and under L2 auth `POST /order`, `GET /data/order/{id}`, `DELETE /order`,
//! `POST /v1/heartbeats`. See `fake_clob.md` beside this file for the shapes and what is
//! assumed.
//!
//! Every signed request is checked as the venue would: the L1 signature must recover the
//! `POLY_ADDRESS`, the L2 HMAC must match the exact bytes of the body under the API secret, and
//! an order's EIP-712 signature (rebuilt from its JSON body, hashed in the domain of the
//! current exchange version) must recover its `signer`. An order signed for another version
//! is refused with `order_version_mismatch`. Marketable orders match against the fake's books
//! (FOK all or nothing, FAK what there is) and consume their depth.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tapeflow_executor::broker::polymarket::auth::l2_verify;
use tapeflow_executor::broker::polymarket::sign::{
    recover, to_hex, Address, ClobAuth, Domain, Order, Side, SignatureType, U256,
};

/// The public Hardhat development key the tests trade with.
pub const TEST_PRIVATE_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
pub const TEST_ADDRESS: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

#[derive(Debug, Clone)]
pub struct FakeClobOptions {
    pub api_key: String,
    /// URL-safe base64.
    pub secret: String,
    pub passphrase: String,
    pub chain_id: u64,
    /// The exchange version `GET /version` reports and orders must be signed for.
    pub version: String,
    /// Fee parameters of every market (`fd.r`, `fd.e`).
    pub fee_rate: Decimal,
    pub fee_exponent: u32,
}

impl Default for FakeClobOptions {
    fn default() -> Self {
        FakeClobOptions {
            api_key: "00000000-0000-4000-8000-000000000001".into(),
            secret: "ZmFrZS1jbG9iLXNlY3JldC1rZXktMDAwMDAwMDAwMDA=".into(),
            passphrase: "fake-passphrase".into(),
            chain_id: 137,
            version: "2".into(),
            fee_rate: Decimal::new(4, 2),
            fee_exponent: 1,
        }
    }
}

/// An order the fake received.
#[derive(Debug, Clone)]
pub struct FakeOrder {
    pub hash: String,
    pub token_id: String,
    pub side: String,
    pub order_type: String,
    /// Shares matched.
    pub matched: Decimal,
    /// Collateral exchanged.
    pub notional: Decimal,
    pub status: String,
    /// How many times this very order (hash) was posted.
    pub posts: usize,
    pub signer_ok: bool,
    pub hmac_ok: bool,
}

#[derive(Default)]
struct Books {
    /// Best first.
    asks: Vec<(Decimal, Decimal)>,
    bids: Vec<(Decimal, Decimal)>,
}

struct Inner {
    opts: FakeClobOptions,
    version: String,
    books: HashMap<String, Books>,
    orders: Vec<FakeOrder>,
    heartbeats: usize,
    l1_ok: usize,
    refused: Vec<String>,
    /// The next order post answers `order_version_mismatch` after switching to this version.
    switch_version: Option<String>,
    /// How long an order post takes to answer (matching in progress).
    order_delay: std::time::Duration,
}

#[derive(Clone)]
struct Shared(Arc<Mutex<Inner>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fake; dropped with the test.
pub struct FakeClob {
    shared: Shared,
    pub base_url: String,
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal")
}

impl FakeClob {
    pub async fn start(opts: FakeClobOptions) -> FakeClob {
        let shared = Shared(Arc::new(Mutex::new(Inner {
            version: opts.version.clone(),
            opts,
            books: HashMap::new(),
            orders: Vec::new(),
            heartbeats: 0,
            l1_ok: 0,
            refused: Vec::new(),
            switch_version: None,
            order_delay: std::time::Duration::ZERO,
        })));
        let app = Router::new()
            .route("/version", get(version))
            .route("/book", get(book))
            .route("/clob-markets/:condition", get(clob_market))
            .route("/auth/derive-api-key", get(derive))
            .route("/auth/api-key", post(derive))
            .route("/order", post(post_order).delete(cancel))
            .route("/data/order/:id", get(order))
            .route("/v1/heartbeats", post(heartbeat))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeClob { shared, base_url: format!("http://{addr}") }
    }

    /// Sets a token's book (levels best first).
    pub fn set_book(&self, token: &str, asks: &[(&str, &str)], bids: &[(&str, &str)]) {
        let conv = |v: &[(&str, &str)]| v.iter().map(|(p, s)| (d(p), d(s))).collect();
        self.shared.lock().books.insert(token.to_string(), Books { asks: conv(asks), bids: conv(bids) });
    }

    /// The next order post is refused with `order_version_mismatch`, the fake then wanting
    /// orders signed for `version`.
    pub fn switch_version_on_next_order(&self, version: &str) {
        self.shared.lock().switch_version = Some(version.to_string());
    }

    /// Order posts answer after `delay` (heartbeats are due meanwhile).
    pub fn set_order_delay(&self, delay: std::time::Duration) {
        self.shared.lock().order_delay = delay;
    }

    pub fn orders(&self) -> Vec<FakeOrder> {
        self.shared.lock().orders.clone()
    }

    pub fn heartbeats(&self) -> usize {
        self.shared.lock().heartbeats
    }

    /// Requests refused for bad authentication or signatures (with why).
    pub fn refused(&self) -> Vec<String> {
        self.shared.lock().refused.clone()
    }

    /// L1 derivations that verified.
    pub fn l1_derivations(&self) -> usize {
        self.shared.lock().l1_ok
    }

    /// The environment of a live tapeflow-exec against this fake (credentials derived by L1).
    pub fn exec_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TAPEFLOW_POLYMARKET_LIVE", "true".into()),
            ("POLYMARKET_PRIVATE_KEY", TEST_PRIVATE_KEY.into()),
            ("TAPEFLOW_POLYMARKET_CLOB_URL", self.base_url.clone()),
            ("TAPEFLOW_POLYMARKET_TIMEOUT_MS", "3000".into()),
            ("TAPEFLOW_POLYMARKET_HEARTBEAT_MS", "100".into()),
        ]
    }
}

fn error(status: StatusCode, msg: &str) -> Response {
    (status, Json(json!({ "success": false, "errorMsg": msg, "error": msg }))).into_response()
}

async fn version(State(s): State<Shared>) -> Json<Value> {
    let v: u64 = s.lock().version.parse().unwrap_or(2);
    Json(json!({ "version": v }))
}

async fn book(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let token = q.get("token_id").cloned().unwrap_or_default();
    let g = s.lock();
    let Some(b) = g.books.get(&token) else {
        return error(StatusCode::NOT_FOUND, "No orderbook exists for the requested token id");
    };
    // The venue lists bids ascending and asks descending (best last).
    let side = |v: &Vec<(Decimal, Decimal)>| -> Vec<Value> {
        v.iter().rev().map(|(p, q)| json!({"price": p.to_string(), "size": q.to_string()})).collect()
    };
    Json(json!({ "asset_id": token, "bids": side(&b.bids), "asks": side(&b.asks), "hash": "", "timestamp": "0" })).into_response()
}

async fn clob_market(State(s): State<Shared>, Path(condition): Path<String>) -> Json<Value> {
    let g = s.lock();
    Json(
        json!({ "condition_id": condition, "fd": { "r": g.opts.fee_rate.to_string(), "e": g.opts.fee_exponent, "to": true } }),
    )
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// L1: the ClobAuth signature must recover POLY_ADDRESS.
async fn derive(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let mut g = s.lock();
    let address = Address::from_str(header(&headers, "POLY_ADDRESS"));
    let nonce: u64 = header(&headers, "POLY_NONCE").parse().unwrap_or(u64::MAX);
    let ok = address.as_ref().is_ok_and(|a| {
        let auth = ClobAuth { address: *a, timestamp: header(&headers, "POLY_TIMESTAMP").to_string(), nonce };
        let digest = Domain::clob_auth(g.opts.chain_id).digest(&auth.struct_hash());
        recover(&digest, header(&headers, "POLY_SIGNATURE")).is_ok_and(|r| r == *a)
    });
    if !ok {
        g.refused.push("L1 signature does not recover POLY_ADDRESS".into());
        return error(StatusCode::UNAUTHORIZED, "Invalid L1 Request headers");
    }
    g.l1_ok += 1;
    Json(json!({ "apiKey": g.opts.api_key, "secret": g.opts.secret, "passphrase": g.opts.passphrase }))
        .into_response()
}

/// L2: the key, passphrase and HMAC over `timestamp + METHOD + path + body`.
fn l2_ok(g: &Inner, headers: &HeaderMap, method: &Method, uri: &Uri, body: &str) -> bool {
    header(headers, "POLY_API_KEY") == g.opts.api_key
        && header(headers, "POLY_PASSPHRASE") == g.opts.passphrase
        && l2_verify(
            &g.opts.secret,
            header(headers, "POLY_TIMESTAMP"),
            method.as_str(),
            uri.path(),
            body,
            header(headers, "POLY_SIGNATURE"),
        )
}

fn order_json(o: &FakeOrder) -> Value {
    json!({
        "id": o.hash, "status": o.status.to_uppercase(), "asset_id": o.token_id, "side": o.side,
        "original_size": o.matched.to_string(), "size_matched": o.matched.to_string(),
        "price": if o.matched.is_zero() { "0".to_string() } else { (o.notional / o.matched).normalize().to_string() },
        "order_type": o.order_type, "associate_trades": [],
    })
}

async fn post_order(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = String::from_utf8_lossy(&body).to_string();
    let delay = s.lock().order_delay;
    tokio::time::sleep(delay).await;
    let mut g = s.lock();
    if !l2_ok(&g, &headers, &method, &uri, &body) {
        g.refused.push("POST /order: bad L2 headers".into());
        return error(StatusCode::UNAUTHORIZED, "Unauthorized/Invalid api key");
    }
    let Ok(v) = serde_json::from_str::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid order payload");
    };
    let o = &v["order"];
    let order_type = v["orderType"].as_str().unwrap_or("GTC").to_string();
    let parsed = (|| {
        Some(Order {
            salt: o["salt"].as_u64()?,
            maker: o["maker"].as_str()?.parse().ok()?,
            signer: o["signer"].as_str()?.parse().ok()?,
            token_id: o["tokenId"].as_str()?.parse().ok()?,
            maker_amount: o["makerAmount"].as_str()?.parse().ok()?,
            taker_amount: o["takerAmount"].as_str()?.parse().ok()?,
            side: if o["side"].as_str()? == "SELL" { Side::Sell } else { Side::Buy },
            signature_type: SignatureType::from_code(o["signatureType"].as_u64()? as u8)?,
            timestamp: o["timestamp"].as_str()?.parse().ok()?,
            metadata: [0; 32],
            builder: [0; 32],
        })
    })();
    let Some(order) = parsed else { return error(StatusCode::BAD_REQUEST, "invalid order payload") };
    if let Some(next) = g.switch_version.take() {
        g.version = next;
        return error(StatusCode::BAD_REQUEST, "order_version_mismatch");
    }
    let domain = Domain::exchange(g.opts.chain_id, false, &g.version);
    let hash = to_hex(&order.hash(&domain));
    let signer_ok = recover(&order.hash(&domain), o["signature"].as_str().unwrap_or(""))
        .is_ok_and(|a| a == order.signer)
        && header(&headers, "POLY_ADDRESS").parse::<Address>().is_ok_and(|a| a == order.signer);
    if !signer_ok {
        // Signed for another version (or by someone else).
        let other = ["2", "3"].iter().any(|v| {
            *v != g.version
                && recover(
                    &order.hash(&Domain::exchange(g.opts.chain_id, false, v)),
                    o["signature"].as_str().unwrap_or(""),
                )
                .is_ok_and(|a| a == order.signer)
        });
        g.refused.push(format!("order {hash}: signature does not recover the signer"));
        return error(
            StatusCode::BAD_REQUEST,
            if other { "order_version_mismatch" } else { "invalid signature" },
        );
    }
    if let Some(existing) = g.orders.iter_mut().find(|x| x.hash == hash) {
        existing.posts += 1;
        return error(StatusCode::BAD_REQUEST, "order already exists");
    }
    let units = |u: &U256| Decimal::from_str(&u.to_decimal()).unwrap_or_default() / Decimal::from(1_000_000);
    let (maker, taker) = (units(&order.maker_amount), units(&order.taker_amount));
    let token = order.token_id.to_decimal();
    let buy = order.side == Side::Buy;
    let (shares, limit) = if buy { (taker, maker / taker) } else { (maker, taker / maker) };
    let books = g.books.entry(token.clone()).or_default();
    let levels = if buy { &mut books.asks } else { &mut books.bids };
    let depth: Decimal =
        levels.iter().filter(|(p, _)| if buy { *p <= limit } else { *p >= limit }).map(|(_, q)| *q).sum();
    let fill = match order_type.as_str() {
        "FOK" if depth < shares => Decimal::ZERO,
        "FOK" => shares,
        _ => shares.min(depth),
    };
    let (mut left, mut notional) = (fill, Decimal::ZERO);
    for (p, q) in levels.iter_mut() {
        if left <= Decimal::ZERO || (buy && *p > limit) || (!buy && *p < limit) {
            break;
        }
        let take = left.min(*q);
        *q -= take;
        notional += take * *p;
        left -= take;
    }
    levels.retain(|(_, q)| *q > Decimal::ZERO);
    let status = if fill.is_zero() { "canceled" } else { "matched" };
    g.orders.push(FakeOrder {
        hash: hash.clone(),
        token_id: token,
        side: o["side"].as_str().unwrap_or("").to_string(),
        order_type: order_type.clone(),
        matched: fill,
        notional,
        status: status.into(),
        posts: 1,
        signer_ok,
        hmac_ok: true,
    });
    if fill.is_zero() {
        let msg = if order_type == "FOK" {
            "order couldn't be fully filled. FOK orders are fully filled or killed."
        } else {
            "no orders found to match with FAK order. FAK orders are partially filled or killed if no match is found."
        };
        return error(StatusCode::BAD_REQUEST, msg);
    }
    let (making, taking) = if buy { (notional, fill) } else { (fill, notional) };
    Json(json!({
        "success": true, "errorMsg": "", "orderID": hash, "status": "matched",
        "makingAmount": making.normalize().to_string(), "takingAmount": taking.normalize().to_string(),
        "transactionsHashes": [], "tradeIDs": [],
    }))
    .into_response()
}

async fn order(
    State(s): State<Shared>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut g = s.lock();
    if !l2_ok(&g, &headers, &method, &uri, "") {
        g.refused.push("GET /data/order: bad L2 headers".into());
        return error(StatusCode::UNAUTHORIZED, "Unauthorized/Invalid api key");
    }
    // The venue answers an unknown id with a null body.
    match g.orders.iter().find(|o| o.hash == id) {
        Some(o) => Json(order_json(o)).into_response(),
        None => Json(Value::Null).into_response(),
    }
}

async fn cancel(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = String::from_utf8_lossy(&body).to_string();
    let g = s.lock();
    if !l2_ok(&g, &headers, &method, &uri, &body) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized/Invalid api key");
    }
    let id = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["orderID"].as_str().map(str::to_string))
        .unwrap_or_default();
    Json(json!({ "canceled": [], "not_canceled": { id: "already canceled or matched" } })).into_response()
}

async fn heartbeat(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = String::from_utf8_lossy(&body).to_string();
    let mut g = s.lock();
    if !l2_ok(&g, &headers, &method, &uri, &body) {
        g.refused.push("heartbeat: bad L2 headers".into());
        return error(StatusCode::UNAUTHORIZED, "Unauthorized/Invalid api key");
    }
    g.heartbeats += 1;
    Json(json!({ "heartbeat_id": format!("hb-{}", g.heartbeats) })).into_response()
}
