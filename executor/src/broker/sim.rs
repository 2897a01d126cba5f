//! The simulated broker (`TAPEFLOW_BROKER=sim`, the default): fills against the live bars in
//! the database with the backtest's fill model ([`FillModel`]), so a session traded here gives
//! the trades `tapeflow.backtest` finds over the same bars:
//!
//! * a market order (entry or exit) fills at the open of the first closed minute bar after its
//!   signal's bar, with adverse slippage; an entry whose fill bar is outside the regular
//!   session is cancelled (unless its strategy config sets `extended_hours`), and one the cash
//!   no longer covers at that open is cut to what it covers (as the backtest does);
//! * bracket legs wait (`held`) until the entry fills, then every closed bar from the entry's
//!   own bar is checked: an open beyond a level fills there, otherwise a touch fills at the
//!   level; stop first when one bar touches both (configurable); filling one cancels the other;
//! * within a bar, exits fill first, then entries, then brackets — the backtest's order.
//!
//! The venue's book is `tapeflow.sim_orders`, apart from the executor's records, so a crash
//! between the two is reconciled as with a real venue. The account: starting cash
//! `risk_limits.account_equity`, realised P&L from the fills, positions marked to the last
//! trade; buying power is the cash not held by positions or open entries.

use super::*;
use rust_decimal::prelude::ToPrimitive;
use std::sync::Arc;
use std::time::Duration;
use tapeflow_analytics::backtest::{money, FillModel};
use tapeflow_analytics::Candle;
use tokio::sync::Mutex;
use tokio_postgres::{Client, Row};

pub struct SimBroker {
    url: String,
    db: Mutex<Client>,
    model: FillModel,
    poll: Duration,
    tx: Arc<std::sync::Mutex<Option<mpsc::Sender<BrokerEvent>>>>,
}

/// The last column: whether the order's strategy config trades outside the regular session.
const ORDER_COLUMNS: &str = "broker_id, client_order_id, symbol, side, leg, qty, filled_qty, filled_avg_price,
    limit_price, stop_price, status, parent_id, checked_through, fee, filled_at, reason,
    EXISTS (SELECT 1 FROM tapeflow.orders o JOIN tapeflow.strategy_configs c ON c.symbol = o.symbol AND c.strategy = o.strategy
            WHERE o.client_order_id = sim_orders.client_order_id AND c.extended_hours)";

#[derive(Debug, Clone)]
struct SimOrder {
    broker_id: String,
    client_order_id: String,
    symbol: String,
    side: OrderSide,
    leg: Leg,
    qty: Decimal,
    filled_qty: Decimal,
    filled_avg_price: Option<Decimal>,
    limit_price: Option<Decimal>,
    stop_price: Option<Decimal>,
    status: String,
    parent_id: Option<String>,
    checked_through: DateTime<Utc>,
    fee: Decimal,
    filled_at: Option<DateTime<Utc>>,
    reason: Option<String>,
    extended_hours: bool,
    changed: bool,
}

fn parse_leg(s: &str) -> Leg {
    match s {
        "entry" => Leg::Entry,
        "take_profit" => Leg::TakeProfit,
        "stop_loss" => Leg::StopLoss,
        _ => Leg::Market,
    }
}

impl SimOrder {
    fn from_row(r: &Row) -> SimOrder {
        SimOrder {
            broker_id: r.get(0),
            client_order_id: r.get(1),
            symbol: r.get(2),
            side: OrderSide::parse(r.get(3)).unwrap_or(OrderSide::Buy),
            leg: parse_leg(r.get(4)),
            qty: r.get(5),
            filled_qty: r.get(6),
            filled_avg_price: r.get(7),
            limit_price: r.get(8),
            stop_price: r.get(9),
            status: r.get(10),
            parent_id: r.get(11),
            checked_through: r.get(12),
            fee: r.get(13),
            filled_at: r.get(14),
            reason: r.get(15),
            extended_hours: r.get(16),
            changed: false,
        }
    }

    fn to_broker(&self, legs: Vec<BrokerOrder>) -> BrokerOrder {
        BrokerOrder {
            broker_id: self.broker_id.clone(),
            client_order_id: self.client_order_id.clone(),
            symbol: self.symbol.clone(),
            side: self.side,
            leg: self.leg,
            qty: self.qty,
            filled_qty: self.filled_qty,
            filled_avg_price: self.filled_avg_price,
            limit_price: self.limit_price,
            stop_price: self.stop_price,
            status: self.status.clone(),
            legs,
            raw: serde_json::json!({
                "id": self.broker_id, "client_order_id": self.client_order_id, "symbol": self.symbol,
                "side": self.side.as_str(), "leg": self.leg.as_str(), "qty": self.qty.to_string(),
                "filled_qty": self.filled_qty.to_string(),
                "filled_avg_price": self.filled_avg_price.map(|p| p.to_string()),
                "status": self.status, "fee": self.fee.to_string(), "reason": self.reason,
            }),
        }
    }

    fn fill(&self) -> Option<Fill> {
        Some(Fill {
            execution_id: format!("sim-{}", self.broker_id),
            qty: self.filled_qty,
            price: self.filled_avg_price?,
            fee: self.fee,
            time: self.filled_at?,
        })
    }

    fn update(&self, event: &str) -> OrderUpdate {
        let order = self.to_broker(Vec::new());
        let fill = if event == "fill" { self.fill() } else { None };
        OrderUpdate {
            event: event.into(),
            time: self.filled_at.unwrap_or_else(Utc::now),
            raw: serde_json::json!({ "event": event, "order": order.raw }),
            order,
            fill,
        }
    }
}

fn db_err(e: tokio_postgres::Error) -> BrokerError {
    BrokerError::Transient(format!("sim broker database: {e}"))
}

/// A closed minute bar.
struct Bar {
    bucket: DateTime<Utc>,
    candle: Candle,
    in_session: bool,
}

impl SimBroker {
    pub async fn connect(url: &str, model: FillModel, poll: Duration) -> anyhow::Result<SimBroker> {
        let db = tapeflow_db::connect(url, Duration::from_secs(30)).await?;
        Ok(SimBroker { url: url.to_string(), db: Mutex::new(db), model, poll, tx: Arc::default() })
    }

    /// The sim's connection, re-established if the database went away (a restart of
    /// PostgreSQL must not leave the venue dead).
    async fn conn(&self) -> Result<tokio::sync::MutexGuard<'_, Client>, BrokerError> {
        let mut db = self.db.lock().await;
        if db.is_closed() {
            tracing::warn!("sim broker: database connection lost; reconnecting");
            *db = tapeflow_db::connect(&self.url, Duration::from_secs(5))
                .await
                .map_err(|e| BrokerError::Transient(format!("sim broker database: {e}")))?;
        }
        Ok(db)
    }

    async fn load(
        &self,
        db: &Client,
        filter: &str,
        args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<SimOrder>, BrokerError> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM tapeflow.sim_orders WHERE {filter} ORDER BY created_at, broker_id"
        );
        Ok(db.query(&sql, args).await.map_err(db_err)?.iter().map(SimOrder::from_row).collect())
    }

    async fn with_legs(&self, db: &Client, parents: Vec<SimOrder>) -> Result<Vec<BrokerOrder>, BrokerError> {
        let mut out = Vec::with_capacity(parents.len());
        for p in parents {
            let legs = self.load(db, "parent_id = $1", &[&p.broker_id]).await?;
            out.push(p.to_broker(legs.iter().map(|l| l.to_broker(Vec::new())).collect()));
        }
        Ok(out)
    }

    fn send(&self, updates: Vec<OrderUpdate>) {
        let tx = self.tx.lock().expect("sim event sender").clone();
        if let Some(tx) = tx {
            for u in updates {
                // The receiver reconciles after a restart if an update is lost here.
                let _ = tx.try_send(BrokerEvent::Update(Box::new(u)));
            }
        }
    }

    /// Fills what the closed bars since the last step allow; returns the updates (already
    /// sent on the event stream).
    pub async fn step(&self) -> Result<usize, BrokerError> {
        let mut db = self.conn().await?;
        let open = self.load(&db, "status IN ('new', 'held')", &[]).await?;
        if open.is_empty() {
            return Ok(0);
        }
        let horizon: DateTime<Utc> = db
            .query_one("SELECT tapeflow.minute(now() - bar_grace) FROM tapeflow.risk_limits", &[])
            .await
            .map_err(db_err)?
            .get(0);
        let mut symbols: Vec<String> = open.iter().map(|o| o.symbol.clone()).collect();
        symbols.dedup();
        let mut updates = Vec::new();
        for symbol in symbols {
            let mut orders: Vec<SimOrder> = open.iter().filter(|o| o.symbol == symbol).cloned().collect();
            let from = orders.iter().map(|o| o.checked_through).min().expect("at least one order");
            let tick_size: f64 = db
                .query_one("SELECT tick_size FROM tapeflow.symbols WHERE symbol = $1", &[&symbol])
                .await
                .map_err(db_err)?
                .get(0);
            let bars = db
                .query(
                    "SELECT bucket, tapeflow.open(c), tapeflow.high(c), tapeflow.low(c), tapeflow.close(c),
                            tapeflow.in_regular_session($1, bucket)
                     FROM (SELECT bucket, tapeflow.rollup(candle) c FROM tapeflow.minute_bars
                           WHERE symbol = $1 AND bucket > $2 AND bucket < $3 GROUP BY bucket) x
                     ORDER BY bucket LIMIT 2000",
                    &[&symbol, &from, &horizon],
                )
                .await
                .map_err(db_err)?;
            let mut cash = None;
            for r in &bars {
                let bar = Bar {
                    bucket: r.get(0),
                    candle: Candle::from_ohlcv(0, r.get(1), r.get(2), r.get(3), r.get(4), 0.0),
                    in_session: r.get(5),
                };
                if cash.is_none() && orders.iter().any(|o| o.leg == Leg::Entry && o.status == "new") {
                    // Cash not held by open positions (cost basis and carried fees).
                    cash = Some(account_of(&db).await?.cash);
                }
                self.on_bar(&mut orders, &bar, tick_size, cash.unwrap_or_default(), &mut updates);
            }
            let tx = db.transaction().await.map_err(db_err)?;
            for o in orders.iter().filter(|o| o.changed) {
                tx.execute(
                    "UPDATE tapeflow.sim_orders SET qty = $2, filled_qty = $3, filled_avg_price = $4, status = $5,
                            checked_through = $6, fee = $7, filled_at = $8, reason = $9
                     WHERE broker_id = $1",
                    &[&o.broker_id, &o.qty, &o.filled_qty, &o.filled_avg_price, &o.status, &o.checked_through, &o.fee,
                      &o.filled_at, &o.reason],
                )
                .await
                .map_err(db_err)?;
            }
            tx.commit().await.map_err(db_err)?;
        }
        let n = updates.len();
        drop(db);
        self.send(updates);
        Ok(n)
    }

    /// One closed bar of one symbol: exits, then entries, then brackets.
    fn on_bar(
        &self,
        orders: &mut [SimOrder],
        bar: &Bar,
        tick_size: f64,
        cash: Decimal,
        out: &mut Vec<OrderUpdate>,
    ) {
        let c = &bar.candle;
        for pass in [Leg::Market, Leg::Entry] {
            for i in 0..orders.len() {
                let o = &orders[i];
                if o.leg != pass || o.status != "new" || o.checked_through >= bar.bucket {
                    continue;
                }
                let buy = o.side == OrderSide::Buy;
                let price = self.model.market_fill(tick_size, c.open, buy);
                if pass == Leg::Entry && !bar.in_session && !o.extended_hours {
                    let id = o.broker_id.clone();
                    cancel_with_legs(orders, &id, "the fill bar is outside the regular session", out);
                    continue;
                }
                let mut qty = o.qty.to_u64().unwrap_or(0);
                if pass == Leg::Entry {
                    qty = self.model.affordable(qty, price, cash);
                    if qty == 0 {
                        let id = o.broker_id.clone();
                        cancel_with_legs(orders, &id, "insufficient cash at the fill", out);
                        continue;
                    }
                }
                let o = &mut orders[i];
                o.qty = Decimal::from(qty);
                fill_order(o, price, self.model.fee(qty, price), bar.bucket, out);
                let id = o.broker_id.clone();
                for leg in
                    orders.iter_mut().filter(|l| l.parent_id.as_deref() == Some(&id) && l.status == "held")
                {
                    leg.status = "new".into();
                    leg.qty = Decimal::from(qty);
                    // The bracket is checked on the entry's own bar too.
                    leg.checked_through = bar.bucket - chrono::Duration::microseconds(1);
                    leg.changed = true;
                    out.push(leg.update("new"));
                }
            }
        }
        // Brackets: the legs of each filled entry, as a pair.
        let parents: Vec<String> = orders
            .iter()
            .filter(|o| {
                matches!(o.leg, Leg::TakeProfit | Leg::StopLoss)
                    && o.status == "new"
                    && o.checked_through < bar.bucket
            })
            .filter_map(|o| o.parent_id.clone())
            .collect();
        for parent in dedup(parents) {
            let legs: Vec<usize> = (0..orders.len())
                .filter(|&i| orders[i].parent_id.as_deref() == Some(&parent) && orders[i].status == "new")
                .collect();
            let stop = legs.iter().find(|&&i| orders[i].leg == Leg::StopLoss).copied();
            let target = legs.iter().find(|&&i| orders[i].leg == Leg::TakeProfit).copied();
            let Some(any) = stop.or(target) else { continue };
            // The legs sell a long (buy a short).
            let long = orders[any].side == OrderSide::Sell;
            let stop_px =
                stop.and_then(|i| orders[i].stop_price).and_then(|p| p.to_f64()).unwrap_or(f64::NAN);
            let target_px = target.and_then(|i| orders[i].limit_price).and_then(|p| p.to_f64());
            let hit = self.model.bracket(long, stop_px, target_px, c);
            for &i in &legs {
                orders[i].checked_through = bar.bucket;
                orders[i].changed = true;
            }
            let Some(hit) = hit else { continue };
            let (win, lose) = match hit.reason {
                tapeflow_analytics::backtest::ExitReason::Stop => (stop, target),
                _ => (target, stop),
            };
            let Some(w) = win else { continue };
            let market = money(hit.price);
            let price = if hit.slipped {
                FillModel::slipped(self.model.slip_abs(tick_size), self.model.slip_frac(), market, !long)
            } else {
                market
            };
            let qty = orders[w].qty.to_u64().unwrap_or(0);
            let fee = self.model.fee(qty, price);
            fill_order(&mut orders[w], price, fee, bar.bucket, out);
            if let Some(l) = lose {
                cancel(&mut orders[l], "the other leg of the bracket filled", out);
            }
        }
        for o in orders.iter_mut().filter(|o| o.status == "new" && o.checked_through < bar.bucket) {
            o.checked_through = bar.bucket;
            o.changed = true;
        }
    }
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

fn fill_order(o: &mut SimOrder, price: Decimal, fee: Decimal, at: DateTime<Utc>, out: &mut Vec<OrderUpdate>) {
    o.filled_qty = o.qty;
    o.filled_avg_price = Some(price);
    o.fee = fee;
    o.filled_at = Some(at);
    o.status = "filled".into();
    o.checked_through = at;
    o.changed = true;
    out.push(o.update("fill"));
}

fn cancel(o: &mut SimOrder, reason: &str, out: &mut Vec<OrderUpdate>) {
    o.status = "canceled".into();
    o.reason = Some(reason.into());
    o.changed = true;
    out.push(o.update("canceled"));
}

fn cancel_with_legs(orders: &mut [SimOrder], id: &str, reason: &str, out: &mut Vec<OrderUpdate>) {
    for o in orders.iter_mut() {
        if (o.broker_id == id || o.parent_id.as_deref() == Some(id)) && !is_terminal(&o.status) {
            cancel(o, reason, out);
        }
    }
}

/// The sim account from the executor's records: starting cash `risk_limits.account_equity`,
/// realised P&L, open positions at cost (collateral for shorts) and marked to the last trade.
async fn account_of(db: &Client) -> Result<Account, BrokerError> {
    let r = db
        .query_one(
            "WITH b AS (SELECT account_equity AS init FROM tapeflow.risk_limits),
                  r AS (SELECT coalesce(sum(realised_pnl), 0) AS realised FROM tapeflow.position_book),
                  o AS (SELECT coalesce(sum(coalesce(unrealised_pnl, 0)), 0) AS u, coalesce(sum(open_fees), 0) AS f,
                               coalesce(sum(quantity * avg_price), 0) AS basis FROM tapeflow.positions)
             SELECT init + realised + u - f, init + realised - basis - f FROM b, r, o",
            &[],
        )
        .await
        .map_err(db_err)?;
    let (equity, cash): (Decimal, Decimal) = (r.get(0), r.get(1));
    Ok(Account { equity, cash, buying_power: cash, last_equity: None, blocked: false })
}

#[async_trait]
impl Broker for SimBroker {
    fn name(&self) -> &'static str {
        "sim"
    }

    async fn account(&self) -> Result<Account, BrokerError> {
        let db = self.conn().await?;
        let mut a = account_of(&db).await?;
        // Open entries hold their estimated cost.
        let reserved: Decimal = db
            .query_one(
                "SELECT coalesce(sum(o.qty * coalesce(tapeflow.last_price(o.symbol), 0)::numeric), 0)
                 FROM tapeflow.sim_orders o WHERE o.leg = 'entry' AND o.status = 'new'",
                &[],
            )
            .await
            .map_err(db_err)?
            .get(0);
        a.buying_power = (a.cash - reserved).max(Decimal::ZERO);
        Ok(a)
    }

    async fn submit(&self, req: &OrderRequest) -> Result<BrokerOrder, BrokerError> {
        let mut db = self.conn().await?;
        let tx = db.transaction().await.map_err(db_err)?;
        let leg = if req.purpose == Purpose::Entry { Leg::Entry } else { Leg::Market };
        let parent = tx
            .query_opt(
                "INSERT INTO tapeflow.sim_orders (broker_id, client_order_id, symbol, side, leg, qty, status, checked_through)
                 VALUES ('sim-' || nextval('tapeflow.sim_order_ids'), $1, $2, $3, $4, $5, 'new', $6)
                 ON CONFLICT (client_order_id) DO NOTHING RETURNING broker_id",
                &[&req.client_order_id, &req.symbol, &req.side.as_str(), &leg.as_str(), &req.qty, &req.signal_bar],
            )
            .await
            .map_err(|e| BrokerError::Rejected { status: 400, message: e.to_string() })?;
        let Some(parent) = parent.map(|r| r.get::<_, String>(0)) else {
            return Err(BrokerError::Duplicate(req.client_order_id.clone()));
        };
        let legs =
            [(Leg::TakeProfit, "tp", req.take_profit, None), (Leg::StopLoss, "sl", None, req.stop_loss)];
        for (leg, suffix, limit, stop) in legs {
            if req.purpose != Purpose::Entry || (limit.is_none() && stop.is_none()) {
                continue;
            }
            tx.execute(
                "INSERT INTO tapeflow.sim_orders (broker_id, client_order_id, parent_id, symbol, side, leg, qty,
                                                  limit_price, stop_price, status, checked_through)
                 VALUES ('sim-' || nextval('tapeflow.sim_order_ids'), $1, $2, $3, $4, $5, $6, $7, $8, 'held', $9)",
                &[&format!("{}-{suffix}", req.client_order_id), &parent, &req.symbol, &req.side.opposite().as_str(),
                  &leg.as_str(), &req.qty, &limit, &stop, &req.signal_bar],
            )
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        let orders = self.load(&db, "broker_id = $1", &[&parent]).await?;
        let mut out = self.with_legs(&db, orders).await?;
        out.pop().ok_or_else(|| BrokerError::Transient("sim order vanished".into()))
    }

    async fn order_by_client_id(&self, client_order_id: &str) -> Result<Option<BrokerOrder>, BrokerError> {
        let db = self.conn().await?;
        let orders = self.load(&db, "client_order_id = $1", &[&client_order_id]).await?;
        Ok(self.with_legs(&db, orders).await?.pop())
    }

    async fn open_orders(&self) -> Result<Vec<BrokerOrder>, BrokerError> {
        let db = self.conn().await?;
        let orders = self.load(&db, "parent_id IS NULL AND status IN ('new', 'held')", &[]).await?;
        self.with_legs(&db, orders).await
    }

    async fn positions(&self) -> Result<Vec<BrokerPosition>, BrokerError> {
        let db = self.conn().await?;
        let rows = db
            .query(
                "SELECT symbol, sum(CASE side WHEN 'buy' THEN filled_qty ELSE -filled_qty END) q,
                        coalesce(max(filled_avg_price) FILTER (WHERE leg IN ('entry')), 0)
                 FROM tapeflow.sim_orders GROUP BY symbol HAVING sum(CASE side WHEN 'buy' THEN filled_qty ELSE -filled_qty END) <> 0",
                &[],
            )
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| BrokerPosition { symbol: r.get(0), qty: r.get(1), avg_entry_price: r.get(2) })
            .collect())
    }

    async fn cancel(&self, broker_id: &str) -> Result<(), BrokerError> {
        let db = self.conn().await?;
        let mut orders = self
            .load(&db, "(broker_id = $1 OR parent_id = $1) AND status IN ('new', 'held')", &[&broker_id])
            .await?;
        let mut updates = Vec::new();
        for o in orders.iter_mut() {
            cancel(o, "cancel requested", &mut updates);
            db.execute(
                "UPDATE tapeflow.sim_orders SET status = 'canceled', reason = $2 WHERE broker_id = $1",
                &[&o.broker_id, &o.reason],
            )
            .await
            .map_err(db_err)?;
        }
        drop(db);
        self.send(updates);
        Ok(())
    }

    fn events(&self) -> mpsc::Receiver<BrokerEvent> {
        let (tx, rx) = mpsc::channel(4096);
        let _ = tx.try_send(BrokerEvent::Connected);
        *self.tx.lock().expect("sim event sender") = Some(tx);
        rx
    }

    fn cost_per_share(&self, price: f64, tick_size: f64, buy: bool) -> Decimal {
        self.model.cost_per_share(self.model.market_fill(tick_size, price, buy))
    }
}

/// Steps the sim broker every `poll` until the process ends.
pub fn spawn_stepper(broker: Arc<SimBroker>) {
    tokio::spawn(async move {
        loop {
            if let Err(e) = broker.step().await {
                tracing::warn!(error = %e, "sim broker step failed");
            }
            tokio::time::sleep(broker.poll).await;
        }
    });
}
