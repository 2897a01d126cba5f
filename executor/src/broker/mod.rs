//! One trait for every venue the executor can trade on. The executor core (claiming, risk
//! gates, records) only speaks this trait; each venue lives in its own module.
//!
//! Idempotency: every order carries a client order id derived from its signal
//! ([`client_order_id`]), unique per account forever. After a crash the executor looks an
//! order up by that id before it sends anything again, and a venue that refuses a duplicate
//! id ([`BrokerError::Duplicate`]) tells the executor the order already exists.

pub mod alpaca;
pub mod polymarket;
pub mod sim;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Order side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderSide {
    Buy,
    Sell,
}

impl OrderSide {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderSide::Buy => "buy",
            OrderSide::Sell => "sell",
        }
    }
    pub fn parse(s: &str) -> Option<OrderSide> {
        match s {
            "buy" => Some(OrderSide::Buy),
            "sell" => Some(OrderSide::Sell),
            _ => None,
        }
    }
    pub fn opposite(self) -> OrderSide {
        match self {
            OrderSide::Buy => OrderSide::Sell,
            OrderSide::Sell => OrderSide::Buy,
        }
    }
}

/// What an order is for; part of its client order id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Opens a position: a bracket entry with its take-profit and stop-loss legs.
    Entry,
    /// Closes a position on an exit signal, a flatten request or the session end.
    Exit,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Entry => "entry",
            Purpose::Exit => "exit",
        }
    }
}

/// The client order id of a signal's order: `tf-<signal id>-<purpose>` (Alpaca allows 48
/// characters; this is at most 29).
pub fn client_order_id(signal_id: i64, purpose: Purpose) -> String {
    format!("tf-{signal_id}-{}", purpose.as_str())
}

/// A market order, optionally with bracket legs (both exits activate once the entry fills;
/// one filling cancels the other).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRequest {
    pub client_order_id: String,
    pub symbol: String,
    pub side: OrderSide,
    /// Whole shares.
    pub qty: Decimal,
    pub purpose: Purpose,
    /// Bracket take-profit limit price (entries only).
    pub take_profit: Option<Decimal>,
    /// Bracket stop-loss stop price (entries only).
    pub stop_loss: Option<Decimal>,
    /// The minute bar whose close produced the signal: the sim broker fills at the next bar.
    pub signal_bar: DateTime<Utc>,
}

/// Which part of a bracket an order is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Leg {
    Entry,
    TakeProfit,
    StopLoss,
    /// A plain market order (exits).
    Market,
}

impl Leg {
    pub fn as_str(self) -> &'static str {
        match self {
            Leg::Entry => "entry",
            Leg::TakeProfit => "take_profit",
            Leg::StopLoss => "stop_loss",
            Leg::Market => "market",
        }
    }
}

/// Order states are normalised to Alpaca's vocabulary (the sim broker uses the same words);
/// these end an order.
pub const TERMINAL_STATUSES: [&str; 6] =
    ["filled", "canceled", "expired", "rejected", "replaced", "done_for_day"];

/// [`TERMINAL_STATUSES`] as an SQL list, for `status NOT IN …` (the partial index
/// `orders_open` of sql/008 is defined on the same list).
pub const TERMINAL_SQL: &str = "('filled', 'canceled', 'expired', 'rejected', 'replaced', 'done_for_day')";

pub fn is_terminal(status: &str) -> bool {
    TERMINAL_STATUSES.contains(&status)
}

/// An order as the venue reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerOrder {
    /// The venue's id.
    pub broker_id: String,
    /// Ours; legs of a bracket report the parent's id with the leg as suffix
    /// (`<parent>-tp`, `<parent>-sl`) when the venue gives them none.
    pub client_order_id: String,
    pub symbol: String,
    pub side: OrderSide,
    pub leg: Leg,
    pub qty: Decimal,
    pub filled_qty: Decimal,
    pub filled_avg_price: Option<Decimal>,
    /// Limit (take-profit) or stop (stop-loss) price.
    pub limit_price: Option<Decimal>,
    pub stop_price: Option<Decimal>,
    pub status: String,
    /// Bracket legs of an entry (empty otherwise).
    pub legs: Vec<BrokerOrder>,
    /// The venue's message, verbatim, for `order_events`.
    pub raw: serde_json::Value,
}

/// One execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fill {
    /// The venue's execution id: unique, so a fill recorded twice is stored once.
    pub execution_id: String,
    pub qty: Decimal,
    pub price: Decimal,
    /// Commission charged on this fill (0 where the venue charges none).
    pub fee: Decimal,
    pub time: DateTime<Utc>,
}

/// Something the venue says about an order: a status change, possibly with a fill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderUpdate {
    /// The venue's event name (`new`, `fill`, `partial_fill`, `canceled`, ...).
    pub event: String,
    pub order: BrokerOrder,
    pub fill: Option<Fill>,
    pub time: DateTime<Utc>,
    /// The whole message as received.
    pub raw: serde_json::Value,
}

/// What the event stream delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum BrokerEvent {
    /// The stream (re)connected: updates may have been missed, reconcile.
    Connected,
    Update(Box<OrderUpdate>),
}

/// The account, for buying power and equity gates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub equity: Decimal,
    pub cash: Decimal,
    pub buying_power: Decimal,
    /// Equity at the previous close, when the venue reports it.
    pub last_equity: Option<Decimal>,
    /// The venue refuses trading (account or trading blocked).
    pub blocked: bool,
}

/// A position as the venue holds it; `qty` is negative for a short.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerPosition {
    pub symbol: String,
    pub qty: Decimal,
    pub avg_entry_price: Decimal,
}

#[cfg(test)]
#[test]
fn terminal_sql_lists_the_terminal_statuses() {
    let listed = TERMINAL_STATUSES.map(|t| format!("'{t}'")).join(", ");
    assert_eq!(TERMINAL_SQL, format!("({listed})"));
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The venue already holds an order with this client order id.
    #[error("duplicate client order id {0}")]
    Duplicate(String),
    /// Refused for good (bad request, insufficient buying power, market closed, ...).
    #[error("rejected by the broker ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// Might succeed later (429, 5xx, timeout, connection lost). The request may or may not
    /// have reached the venue: look the order up before sending it again.
    #[error("transient broker error: {0}")]
    Transient(String),
}

/// A venue. Implementations are cheap to share (`Arc`) and safe to call concurrently.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// `sim`, `alpaca`.
    fn name(&self) -> &'static str;
    async fn account(&self) -> Result<Account, BrokerError>;
    /// Sends an order once; retries are the caller's (after [`Broker::order_by_client_id`]).
    async fn submit(&self, req: &OrderRequest) -> Result<BrokerOrder, BrokerError>;
    /// The order with this client order id, with its legs, or None when the venue has none.
    async fn order_by_client_id(&self, client_order_id: &str) -> Result<Option<BrokerOrder>, BrokerError>;
    /// Orders not yet in a terminal state.
    async fn open_orders(&self) -> Result<Vec<BrokerOrder>, BrokerError>;
    async fn positions(&self) -> Result<Vec<BrokerPosition>, BrokerError>;
    /// Requests cancellation; the outcome arrives as an update.
    async fn cancel(&self, broker_id: &str) -> Result<(), BrokerError>;
    /// Starts the venue's order-update stream (reconnecting on its own); each (re)connect is
    /// announced by [`BrokerEvent::Connected`].
    fn events(&self) -> mpsc::Receiver<BrokerEvent>;
    /// What one share is expected to cost at `price` (sizing's estimate): the price itself
    /// unless the venue models slippage and commission (the sim broker does).
    fn cost_per_share(&self, price: f64, _tick_size: f64, _buy: bool) -> Decimal {
        Decimal::try_from(price).unwrap_or_default()
    }
}
