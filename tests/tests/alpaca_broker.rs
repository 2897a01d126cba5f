//! The Alpaca broker against the fake Alpaca server: REST orders and lookups, error mapping,
//! the trade_updates stream (binary and text frames, reconnects, hostile delivery). No
//! database needed.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tapeflow_executor::broker::alpaca::{AlpacaBroker, AlpacaConfig};
use tapeflow_executor::broker::{
    client_order_id, Broker, BrokerError, BrokerEvent, Leg, OrderRequest, OrderSide, OrderUpdate, Purpose,
};
use tapeflow_tests::fake_alpaca::{FakeAlpaca, FakeOptions};
use tokio::sync::mpsc::Receiver;
use tokio_tungstenite::tungstenite::Message;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn config(fake: &FakeAlpaca) -> AlpacaConfig {
    let mut cfg = AlpacaConfig::new(fake.key_id.clone(), fake.secret_key.clone(), &fake.base_url);
    cfg.stream_url = fake.stream_url.clone();
    cfg.request_timeout = Duration::from_secs(3);
    cfg.reconnect_min = Duration::from_millis(50);
    cfg.reconnect_max = Duration::from_millis(400);
    cfg.unauthorized_backoff = Duration::from_millis(300);
    cfg
}

async fn setup() -> (FakeAlpaca, Arc<AlpacaBroker>) {
    let fake = FakeAlpaca::start(FakeOptions::default()).await;
    let broker = Arc::new(AlpacaBroker::new(config(&fake)).unwrap());
    (fake, broker)
}

fn entry(signal: i64, symbol: &str, side: OrderSide, qty: &str, tp: &str, sl: &str) -> OrderRequest {
    OrderRequest {
        client_order_id: client_order_id(signal, Purpose::Entry),
        symbol: symbol.into(),
        side,
        qty: d(qty),
        purpose: Purpose::Entry,
        take_profit: Some(d(tp)),
        stop_loss: Some(d(sl)),
        signal_bar: Utc::now(),
    }
}

fn exit(signal: i64, symbol: &str, side: OrderSide, qty: &str) -> OrderRequest {
    OrderRequest {
        client_order_id: client_order_id(signal, Purpose::Exit),
        symbol: symbol.into(),
        side,
        qty: d(qty),
        purpose: Purpose::Exit,
        take_profit: None,
        stop_loss: None,
        signal_bar: Utc::now(),
    }
}

async fn next_event(rx: &mut Receiver<BrokerEvent>) -> BrokerEvent {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("an event within 5 s")
        .expect("the stream task is running")
}

async fn connected(rx: &mut Receiver<BrokerEvent>) {
    match next_event(rx).await {
        BrokerEvent::Connected => {}
        other => panic!("expected Connected, got {other:?}"),
    }
}

async fn update(rx: &mut Receiver<BrokerEvent>) -> OrderUpdate {
    match next_event(rx).await {
        BrokerEvent::Update(u) => *u,
        other => panic!("expected an update, got {other:?}"),
    }
}

/// Nothing arrives within `ms`.
async fn quiet(rx: &mut Receiver<BrokerEvent>, ms: u64) {
    if let Ok(ev) = tokio::time::timeout(Duration::from_millis(ms), rx.recv()).await {
        panic!("expected silence, got {ev:?}");
    }
}

#[tokio::test]
async fn bracket_entry_is_sent_in_alpacas_shape_and_found_by_client_id() {
    let (fake, broker) = setup().await;
    let req = entry(7, "AAPL", OrderSide::Buy, "10", "190.126", "180.5");
    let order = broker.submit(&req).await.unwrap();

    assert_eq!(
        fake.order_requests(),
        vec![json!({
            "symbol": "AAPL", "qty": "10", "side": "buy", "type": "market", "time_in_force": "day",
            "order_class": "bracket", "client_order_id": "tf-7-entry",
            "take_profit": {"limit_price": "190.13"}, "stop_loss": {"stop_price": "180.5"}
        })]
    );
    assert_eq!(order.client_order_id, "tf-7-entry");
    assert_eq!(order.leg, Leg::Entry);
    assert_eq!(order.status, "accepted");
    assert_eq!(order.qty, d("10"));
    assert_eq!(order.legs.len(), 2);
    let tp = order.legs.iter().find(|l| l.leg == Leg::TakeProfit).expect("take-profit leg");
    let sl = order.legs.iter().find(|l| l.leg == Leg::StopLoss).expect("stop-loss leg");
    assert_eq!((tp.side, tp.limit_price, tp.status.as_str()), (OrderSide::Sell, Some(d("190.13")), "held"));
    assert_eq!((sl.side, sl.stop_price, sl.status.as_str()), (OrderSide::Sell, Some(d("180.5")), "held"));
    // The venue names the legs itself.
    assert!(!tp.client_order_id.starts_with("tf-") && !tp.client_order_id.is_empty());
    assert_ne!(tp.broker_id, order.broker_id);

    let found = broker.order_by_client_id("tf-7-entry").await.unwrap().expect("found by client id");
    assert_eq!(found.broker_id, order.broker_id);
    assert_eq!(found.status, "new");
    assert_eq!(found.legs.len(), 2);
    assert!(broker.order_by_client_id("tf-999-entry").await.unwrap().is_none());
    assert!(fake
        .requests()
        .iter()
        .any(|r| r == "GET /v2/orders:by_client_order_id?client_order_id=tf-7-entry&nested=true"));

    let open = broker.open_orders().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].legs.len(), 2);
    assert!(fake.requests().iter().any(|r| r == "GET /v2/orders?status=open&nested=true&limit=500"));
    assert_eq!(fake.count_by_client_id().get("tf-7-entry"), Some(&1));

    // Below a dollar, four decimals.
    broker.submit(&entry(8, "PENY", OrderSide::Sell, "1000", "0.41234", "0.55555")).await.unwrap();
    let sent = &fake.order_requests()[1];
    assert_eq!(sent["take_profit"]["limit_price"], "0.4123");
    assert_eq!(sent["stop_loss"]["stop_price"], "0.5556");
}

#[tokio::test]
async fn exits_are_plain_market_orders() {
    let (fake, broker) = setup().await;
    let order = broker.submit(&exit(9, "MSFT", OrderSide::Sell, "3")).await.unwrap();
    assert_eq!(
        fake.order_requests()[0],
        json!({"symbol": "MSFT", "qty": "3", "side": "sell", "type": "market", "time_in_force": "day",
               "client_order_id": "tf-9-exit"})
    );
    assert_eq!(order.leg, Leg::Market);
    assert!(order.legs.is_empty());
}

#[tokio::test]
async fn a_duplicate_client_order_id_is_reported_as_duplicate() {
    let (fake, broker) = setup().await;
    let req = entry(11, "AAPL", OrderSide::Buy, "5", "200", "190");
    broker.submit(&req).await.unwrap();
    match broker.submit(&req).await {
        Err(BrokerError::Duplicate(id)) => assert_eq!(id, "tf-11-entry"),
        other => panic!("expected Duplicate, got {other:?}"),
    }
    assert_eq!(fake.count_by_client_id().get("tf-11-entry"), Some(&1));
    assert_eq!(fake.orders().len(), 1);
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_transient_refusals_are_rejected() {
    let (fake, broker) = setup().await;
    let req = entry(12, "AAPL", OrderSide::Buy, "5", "200", "190");
    fake.rate_limit_next_orders(1);
    assert!(matches!(broker.submit(&req).await, Err(BrokerError::Transient(m)) if m.contains("429")));
    fake.fail_next_orders(1);
    assert!(matches!(broker.submit(&req).await, Err(BrokerError::Transient(m)) if m.contains("500")));
    assert!(broker.order_by_client_id("tf-12-entry").await.unwrap().is_none(), "nothing stored");
    broker.submit(&req).await.unwrap();
    assert_eq!(fake.count_by_client_id().get("tf-12-entry"), Some(&1));
    assert_eq!(fake.order_requests().len(), 3);

    fake.reject_next_order(403, 40310000, "insufficient buying power");
    match broker.submit(&entry(13, "AAPL", OrderSide::Buy, "5", "200", "190")).await {
        Err(BrokerError::Rejected { status: 403, message }) => {
            assert_eq!(message, "insufficient buying power")
        }
        other => panic!("expected Rejected 403, got {other:?}"),
    }
    // The fake validates like the venue: a buy bracket with its take-profit below its stop.
    match broker.submit(&entry(14, "AAPL", OrderSide::Buy, "5", "180", "190")).await {
        Err(BrokerError::Rejected { status: 422, .. }) => {}
        other => panic!("expected Rejected 422, got {other:?}"),
    }
    fake.set_trading_blocked(true);
    assert!(matches!(
        broker.submit(&entry(15, "AAPL", OrderSide::Buy, "5", "200", "190")).await,
        Err(BrokerError::Rejected { status: 403, .. })
    ));
}

#[tokio::test]
async fn an_accepted_order_whose_answer_times_out_is_transient_and_then_found() {
    let fake = FakeAlpaca::start(FakeOptions::default()).await;
    let mut cfg = config(&fake);
    cfg.request_timeout = Duration::from_millis(300);
    let broker = AlpacaBroker::new(cfg).unwrap();
    fake.accept_then_delay_next_order(Duration::from_secs(3));
    let req = entry(21, "AAPL", OrderSide::Buy, "5", "200", "190");
    let started = std::time::Instant::now();
    match broker.submit(&req).await {
        Err(BrokerError::Transient(m)) => assert!(m.contains("timed out"), "{m}"),
        other => panic!("expected Transient, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    let found = broker.order_by_client_id("tf-21-entry").await.unwrap().expect("the venue has it");
    assert_eq!(found.legs.len(), 2);
    // The caller's retry after the lookup would be a duplicate: exactly one order.
    assert!(matches!(broker.submit(&req).await, Err(BrokerError::Duplicate(_))));
    assert_eq!(fake.count_by_client_id().get("tf-21-entry"), Some(&1));
}

#[tokio::test]
async fn a_dead_server_is_transient() {
    let fake = FakeAlpaca::start(FakeOptions::default()).await;
    let cfg = config(&fake);
    drop(fake);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let broker = AlpacaBroker::new(cfg).unwrap();
    assert!(matches!(broker.account().await, Err(BrokerError::Transient(_))));
}

#[tokio::test]
async fn bad_keys_are_refused_on_rest_and_stream() {
    let fake = FakeAlpaca::start(FakeOptions::default()).await;
    let mut cfg = config(&fake);
    cfg.secret_key = "wrong".into();
    let broker = AlpacaBroker::new(cfg).unwrap();
    match broker.account().await {
        Err(BrokerError::Rejected { status: 401, message }) => {
            assert_eq!(message, "request is not authorized")
        }
        other => panic!("expected Rejected 401, got {other:?}"),
    }
    let mut rx = broker.events();
    quiet(&mut rx, 800).await;
    assert_eq!(fake.listening(), 0);
    assert!(fake.connections() >= 2, "tries again after the unauthorized backoff");
}

#[tokio::test]
async fn account_and_positions_are_parsed() {
    let (fake, broker) = setup().await;
    let a = broker.account().await.unwrap();
    assert_eq!(
        (a.equity, a.cash, a.buying_power, a.last_equity),
        (d("100000"), d("100000"), d("400000"), Some(d("100000")))
    );
    assert!(!a.blocked);
    fake.set_account_blocked(true);
    assert!(broker.account().await.unwrap().blocked);
    fake.set_account_blocked(false);

    assert!(broker.positions().await.unwrap().is_empty());
    broker.submit(&entry(31, "AAPL", OrderSide::Buy, "10", "200", "190")).await.unwrap();
    fake.fill("tf-31-entry", d("4"), d("195"));
    fake.fill("tf-31-entry", d("6"), d("196"));
    fake.set_position("TSLA", d("-3"), d("250.5"));
    let mut p = broker.positions().await.unwrap();
    p.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    assert_eq!(p.len(), 2);
    assert_eq!((p[0].symbol.as_str(), p[0].qty, p[0].avg_entry_price), ("AAPL", d("10"), d("195.6")));
    assert_eq!((p[1].symbol.as_str(), p[1].qty, p[1].avg_entry_price), ("TSLA", d("-3"), d("250.5")));
    let o = broker.order_by_client_id("tf-31-entry").await.unwrap().unwrap();
    assert_eq!((o.status.as_str(), o.filled_qty, o.filled_avg_price), ("filled", d("10"), Some(d("195.6"))));
    assert!(o.legs.iter().all(|l| l.status == "new"), "legs active once the entry filled");
}

#[tokio::test]
async fn stream_updates_in_binary_and_text_frames() {
    let (fake, broker) = setup().await;
    let mut rx = broker.events();
    connected(&mut rx).await;
    assert_eq!(fake.listening(), 1);

    let order = broker.submit(&entry(41, "AAPL", OrderSide::Buy, "10", "200", "190")).await.unwrap();
    let u = update(&mut rx).await;
    assert_eq!(
        (u.event.as_str(), u.order.leg, u.order.broker_id.as_str()),
        ("new", Leg::Entry, order.broker_id.as_str())
    );
    assert!(u.fill.is_none());
    assert_eq!(u.order.legs.len(), 2);

    let e1 = fake.fill("tf-41-entry", d("4"), d("195.5"));
    let u = update(&mut rx).await;
    assert_eq!(u.event, "partial_fill");
    let f = u.fill.clone().unwrap();
    assert_eq!(
        (f.execution_id.as_str(), f.qty, f.price, f.fee),
        (e1.as_str(), d("4"), d("195.5"), Decimal::ZERO)
    );
    assert_eq!(u.raw["data"]["position_qty"], "4");
    assert_eq!(u.order.status, "partially_filled");

    fake.set_binary_frames(false);
    let e2 = fake.fill("tf-41-entry", d("6"), d("196"));
    let u = update(&mut rx).await;
    assert_eq!(u.event, "fill");
    assert_eq!(u.fill.as_ref().unwrap().execution_id, e2);
    assert_eq!(u.order.status, "filled");
    assert_eq!(u.order.filled_qty, d("10"));
    assert!(u.order.legs.iter().all(|l| l.status == "new"));

    // The take-profit fills; the stop is canceled (one-cancels-other).
    fake.set_binary_frames(true);
    fake.fill_leg("tf-41-entry", Leg::TakeProfit, d("200"));
    let u = update(&mut rx).await;
    assert_eq!((u.event.as_str(), u.order.leg, u.order.side), ("fill", Leg::TakeProfit, OrderSide::Sell));
    assert_eq!(u.fill.as_ref().unwrap().qty, d("10"));
    assert_eq!(u.raw["data"]["position_qty"], "0");
    let u = update(&mut rx).await;
    assert_eq!(
        (u.event.as_str(), u.order.leg, u.order.status.as_str()),
        ("canceled", Leg::StopLoss, "canceled")
    );
    assert!(broker.positions().await.unwrap().is_empty());
    assert!(broker.open_orders().await.unwrap().is_empty());
}

#[tokio::test]
async fn cancel_cancels_the_group_and_tolerates_final_orders() {
    let (fake, broker) = setup().await;
    let mut rx = broker.events();
    connected(&mut rx).await;
    let order = broker.submit(&entry(51, "AAPL", OrderSide::Buy, "10", "200", "190")).await.unwrap();
    assert_eq!(update(&mut rx).await.event, "new");
    broker.cancel(&order.broker_id).await.unwrap();
    let mut canceled = Vec::new();
    for _ in 0..3 {
        let u = update(&mut rx).await;
        assert_eq!(u.event, "canceled");
        canceled.push(u.order.leg);
    }
    assert_eq!(canceled, vec![Leg::Entry, Leg::TakeProfit, Leg::StopLoss]);
    // Already final: not an error.
    broker.cancel(&order.broker_id).await.unwrap();
    match broker.cancel("no-such-order").await {
        Err(BrokerError::Rejected { status: 404, .. }) => {}
        other => panic!("expected Rejected 404, got {other:?}"),
    }
    assert_eq!(fake.order("tf-51-entry").unwrap()["status"], "canceled");
}

#[tokio::test]
async fn the_stream_reconnects_after_a_drop_and_says_so() {
    let (fake, broker) = setup().await;
    let mut rx = broker.events();
    connected(&mut rx).await;
    fake.drop_stream();
    connected(&mut rx).await;
    assert_eq!(fake.connections(), 2);

    // Dropped in the middle of a fill sequence: the partial fill arrives, then the stream
    // goes; the rest filled while it is down is only visible over REST.
    broker.submit(&entry(61, "AAPL", OrderSide::Buy, "10", "200", "190")).await.unwrap();
    assert_eq!(update(&mut rx).await.event, "new");
    fake.drop_stream_after("partial_fill");
    fake.fill("tf-61-entry", d("3"), d("195"));
    fake.fill("tf-61-entry", d("7"), d("195"));
    assert_eq!(update(&mut rx).await.event, "partial_fill");
    connected(&mut rx).await;
    let o = broker.order_by_client_id("tf-61-entry").await.unwrap().unwrap();
    assert_eq!((o.status.as_str(), o.filled_qty), ("filled", d("10")));
    assert_eq!(fake.connections(), 3);

    // After the reconnect, updates flow again.
    fake.fill_leg("tf-61-entry", Leg::StopLoss, d("190"));
    let u = update(&mut rx).await;
    assert_eq!((u.event.as_str(), u.order.leg), ("fill", Leg::StopLoss));
}

#[tokio::test]
async fn malformed_frames_are_skipped_without_dropping_the_stream() {
    let (fake, broker) = setup().await;
    let mut rx = broker.events();
    connected(&mut rx).await;
    fake.send_raw_frame(b"garbage", true);
    fake.send_raw_frame(b"\xff\xfe\x00", true);
    fake.send_raw_frame(br#"{"stream":"trade_updates","data":{"event":"fill"}}"#, false);
    fake.send_raw_frame(br#"{"stream":"trade_updates","data":{"event":"fill","order":{"id":"x"}}}"#, true);
    fake.send_raw_frame(br#"[1,2,3]"#, false);
    fake.send_raw_frame(br#"{"stream":"something_new","data":{}}"#, true);
    broker.submit(&entry(71, "AAPL", OrderSide::Buy, "1", "200", "190")).await.unwrap();
    let u = update(&mut rx).await;
    assert_eq!(u.event, "new");
    assert_eq!(fake.connections(), 1, "still the first connection");
}

#[tokio::test]
async fn out_of_order_and_duplicated_updates_are_delivered_as_they_come() {
    let (fake, broker) = setup().await;
    let mut rx = broker.events();
    connected(&mut rx).await;
    fake.deliver_out_of_order(true);
    broker.submit(&entry(81, "AAPL", OrderSide::Buy, "2", "200", "190")).await.unwrap();
    quiet(&mut rx, 200).await; // `new` is held back
    let exec = fake.fill("tf-81-entry", d("2"), d("195"));
    let first = update(&mut rx).await;
    let second = update(&mut rx).await;
    assert_eq!((first.event.as_str(), second.event.as_str()), ("fill", "new"));
    assert_eq!(first.fill.unwrap().execution_id, exec);
    fake.deliver_out_of_order(false);

    fake.duplicate_events(true);
    fake.fill_leg("tf-81-entry", Leg::TakeProfit, d("200"));
    let a = update(&mut rx).await;
    let b = update(&mut rx).await;
    assert_eq!((a.event.as_str(), b.event.as_str()), ("fill", "fill"));
    assert_eq!(a.fill.unwrap().execution_id, b.fill.unwrap().execution_id, "same execution twice");
    let c = update(&mut rx).await;
    let e = update(&mut rx).await;
    assert_eq!((c.event.as_str(), e.event.as_str()), ("canceled", "canceled"));
}

#[tokio::test]
async fn pings_keep_a_quiet_stream_open() {
    let fake = FakeAlpaca::start(FakeOptions::default()).await;
    let mut cfg = config(&fake);
    cfg.ping_interval = Duration::from_millis(100);
    let broker = AlpacaBroker::new(cfg).unwrap();
    let mut rx = broker.events();
    connected(&mut rx).await;
    // Ten ping intervals without a trade update: the pongs keep the connection.
    quiet(&mut rx, 1000).await;
    assert_eq!(fake.connections(), 1);
}

#[tokio::test]
async fn dropping_the_receiver_stops_the_stream() {
    let (fake, broker) = setup().await;
    let mut rx = broker.events();
    connected(&mut rx).await;
    drop(rx);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while fake.listening() > 0 {
        assert!(std::time::Instant::now() < deadline, "the stream task closed its socket");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The fake's handshake, seen by a bare WebSocket client.
#[tokio::test]
async fn the_fake_speaks_the_documented_handshake() {
    let fake = FakeAlpaca::start(FakeOptions { binary_frames: false, ..FakeOptions::default() }).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(fake.stream_url.as_str()).await.unwrap();
    let listen = json!({"action": "listen", "data": {"streams": ["trade_updates"]}});
    ws.send(Message::text(listen.to_string())).await.unwrap();
    assert_eq!(
        read_json(&mut ws).await,
        json!({"stream": "authorization", "data": {"status": "unauthorized", "action": "listen"}})
    );
    let auth =
        json!({"action": "authenticate", "data": {"key_id": fake.key_id, "secret_key": fake.secret_key}});
    ws.send(Message::text(auth.to_string())).await.unwrap();
    assert_eq!(
        read_json(&mut ws).await,
        json!({"stream": "authorization", "data": {"status": "authorized", "action": "authenticate"}})
    );
    ws.send(Message::text(listen.to_string())).await.unwrap();
    assert_eq!(
        read_json(&mut ws).await,
        json!({"stream": "listening", "data": {"streams": ["trade_updates"]}})
    );

    // Wrong keys: unauthorized, then closed.
    let (mut ws, _) = tokio_tungstenite::connect_async(fake.stream_url.as_str()).await.unwrap();
    let bad = json!({"action": "authenticate", "data": {"key_id": "x", "secret_key": "y"}});
    ws.send(Message::text(bad.to_string())).await.unwrap();
    assert_eq!(
        read_json(&mut ws).await,
        json!({"stream": "authorization", "data": {"status": "unauthorized", "action": "authenticate"}})
    );
}

type Client = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn read_json(ws: &mut Client) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Binary(b) => return serde_json::from_slice(&b).unwrap(),
            _ => continue,
        }
    }
}
