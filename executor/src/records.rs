//! What the executor writes: order rows, append-only order events, fills (which keep the
//! positions through the `fills_apply` trigger) and signal states. Every write that belongs
//! together is one transaction.

use crate::broker::{is_terminal, BrokerOrder, Fill, Leg, OrderRequest, Purpose};
use rust_decimal::Decimal;
use tokio_postgres::{GenericClient, Row};

/// How far along an order state is; a state never moves back (updates can arrive out of
/// order, and a late `new` must not undo a `fill`).
pub fn status_rank(status: &str) -> u8 {
    match status {
        "pending_submit" => 0,
        "pending_new" | "accepted" | "held" => 1,
        "new" | "pending_replace" | "pending_cancel" | "calculated" | "stopped" | "suspended" => 2,
        "partially_filled" => 3,
        s if is_terminal(s) => 9,
        _ => 2,
    }
}

/// The status to store when `incoming` is reported for an order stored as `current`.
pub fn next_status<'a>(current: &'a str, incoming: &'a str) -> &'a str {
    if status_rank(incoming) >= status_rank(current) && !is_terminal(current) {
        incoming
    } else {
        current
    }
}

/// One of our order rows.
#[derive(Debug, Clone)]
pub struct OrderRow {
    pub id: i64,
    pub signal_id: i64,
    pub parent_id: Option<i64>,
    pub client_order_id: String,
    pub broker_order_id: Option<String>,
    pub symbol: String,
    pub strategy: String,
    pub purpose: String,
    pub leg: String,
    pub side: String,
    pub qty: Decimal,
    pub limit_price: Option<Decimal>,
    pub stop_price: Option<Decimal>,
    pub status: String,
}

pub const ORDER_COLUMNS: &str =
    "id, signal_id, parent_id, client_order_id, broker_order_id, symbol, strategy, purpose, leg,
    side, qty, limit_price, stop_price, status";

impl OrderRow {
    pub fn from_row(r: &Row) -> OrderRow {
        OrderRow {
            id: r.get(0),
            signal_id: r.get(1),
            parent_id: r.get(2),
            client_order_id: r.get(3),
            broker_order_id: r.get(4),
            symbol: r.get(5),
            strategy: r.get(6),
            purpose: r.get(7),
            leg: r.get(8),
            side: r.get(9),
            qty: r.get(10),
            limit_price: r.get(11),
            stop_price: r.get(12),
            status: r.get(13),
        }
    }
}

pub async fn order_by_client_id(db: &impl GenericClient, coid: &str) -> anyhow::Result<Option<OrderRow>> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM tapeflow.orders WHERE client_order_id = $1");
    Ok(db.query_opt(&sql, &[&coid]).await?.as_ref().map(OrderRow::from_row))
}

/// Our row for a venue order: by the venue's id, else by client order id.
pub async fn find_order(
    db: &impl GenericClient,
    broker: &str,
    o: &BrokerOrder,
) -> anyhow::Result<Option<OrderRow>> {
    let sql = format!(
        "SELECT {ORDER_COLUMNS} FROM tapeflow.orders WHERE (broker = $1 AND broker_order_id = $2) OR client_order_id = $3
         ORDER BY (broker_order_id = $2) DESC NULLS LAST LIMIT 1"
    );
    Ok(db
        .query_opt(&sql, &[&broker, &o.broker_id, &o.client_order_id])
        .await?
        .as_ref()
        .map(OrderRow::from_row))
}

/// Records an order before it is sent (`pending_submit`): the write-ahead record a restart
/// finds. The entry row carries the bracket levels.
pub async fn insert_pending(
    db: &impl GenericClient,
    broker: &str,
    signal_id: i64,
    strategy: &str,
    req: &OrderRequest,
) -> anyhow::Result<OrderRow> {
    let leg = if req.purpose == Purpose::Entry { Leg::Entry } else { Leg::Market };
    let sql = format!(
        "INSERT INTO tapeflow.orders (signal_id, broker, client_order_id, symbol, strategy, purpose, leg, side, qty,
                                      limit_price, stop_price)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (client_order_id) DO UPDATE SET updated_at = now()
         RETURNING {ORDER_COLUMNS}"
    );
    let r = db
        .query_one(
            &sql,
            &[
                &signal_id,
                &broker,
                &req.client_order_id,
                &req.symbol,
                &strategy,
                &req.purpose.as_str(),
                &leg.as_str(),
                &req.side.as_str(),
                &req.qty,
                &req.take_profit,
                &req.stop_loss,
            ],
        )
        .await?;
    let row = OrderRow::from_row(&r);
    event(db, row.id, "pending_submit", "pending_submit", &serde_json::to_value(req)?).await?;
    Ok(row)
}

pub async fn event(
    db: &impl GenericClient,
    order_id: i64,
    event: &str,
    status: &str,
    raw: &serde_json::Value,
) -> anyhow::Result<()> {
    db.execute(
        "INSERT INTO tapeflow.order_events (order_id, event, status, raw) VALUES ($1, $2, $3, $4)",
        &[&order_id, &event, &status, raw],
    )
    .await?;
    Ok(())
}

/// Stores what the venue says of one of our orders: its id, status (forward only) and fill
/// progress, then any filled quantity not yet recorded as fills. Returns the new status.
pub async fn sync_order(
    db: &impl GenericClient,
    broker: &str,
    row: &OrderRow,
    o: &BrokerOrder,
    event_name: &str,
    raw: &serde_json::Value,
    fill: Option<&Fill>,
) -> anyhow::Result<String> {
    let status = next_status(&row.status, &o.status).to_string();
    db.execute(
        "UPDATE tapeflow.orders SET broker_order_id = coalesce(broker_order_id, $2), status = $3,
                filled_qty = greatest(filled_qty, $4), filled_avg_price = coalesce($5, filled_avg_price),
                qty = CASE WHEN $6::numeric > 0 THEN $6::numeric ELSE qty END, updated_at = now()
         WHERE id = $1",
        &[&row.id, &o.broker_id, &status, &o.filled_qty, &o.filled_avg_price, &o.qty],
    )
    .await?;
    event(db, row.id, event_name, &status, raw).await?;
    record_fills(db, broker, row, o, fill).await?;
    Ok(status)
}

/// Records the part of the venue's cumulative filled quantity that our fills do not hold
/// yet. A fill reported by the stream keeps its execution id; quantity found only by
/// reconciliation gets a derived id and the price implied by the venue's average. So a fill
/// seen twice, out of order, or both ways, is stored once.
async fn record_fills(
    db: &impl GenericClient,
    broker: &str,
    row: &OrderRow,
    o: &BrokerOrder,
    fill: Option<&Fill>,
) -> anyhow::Result<()> {
    if o.filled_qty <= Decimal::ZERO {
        return Ok(());
    }
    let r = db
        .query_one(
            "SELECT coalesce(sum(qty), 0), coalesce(sum(qty * price), 0) FROM tapeflow.fills WHERE order_id = $1",
            &[&row.id],
        )
        .await?;
    let (have, have_notional): (Decimal, Decimal) = (r.get(0), r.get(1));
    let missing = o.filled_qty - have;
    if missing <= Decimal::ZERO {
        return Ok(());
    }
    let (execution_id, price, fee, time) = match fill {
        Some(f) if f.qty == missing => (f.execution_id.clone(), f.price, f.fee, f.time),
        _ => {
            let Some(avg) = o.filled_avg_price else {
                anyhow::bail!(
                    "order {}: filled {} without an average price",
                    row.client_order_id,
                    o.filled_qty
                )
            };
            let price = ((avg * o.filled_qty - have_notional) / missing).round_dp(8);
            let id = match fill {
                Some(f) => f.execution_id.clone(),
                None => format!("recon-{}-{}", o.broker_id, o.filled_qty.normalize()),
            };
            (
                id,
                price,
                fill.map(|f| f.fee).unwrap_or_default(),
                fill.map(|f| f.time).unwrap_or_else(chrono::Utc::now),
            )
        }
    };
    db.execute(
        "INSERT INTO tapeflow.fills (order_id, broker, execution_id, symbol, strategy, side, qty, price, fee, time)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (broker, execution_id) DO NOTHING",
        &[&row.id, &broker, &execution_id, &row.symbol, &row.strategy, &row.side, &missing, &price, &fee, &time],
    )
    .await?;
    Ok(())
}

/// Inserts (or updates) the rows of a bracket's legs under their entry.
pub async fn upsert_legs(
    db: &impl GenericClient,
    broker: &str,
    parent: &OrderRow,
    legs: &[BrokerOrder],
) -> anyhow::Result<Vec<(OrderRow, BrokerOrder)>> {
    let mut out = Vec::new();
    for leg in legs {
        let coid = if leg.client_order_id.is_empty() {
            format!("{}-{}", parent.client_order_id, if leg.leg == Leg::StopLoss { "sl" } else { "tp" })
        } else {
            leg.client_order_id.clone()
        };
        let sql = format!(
            "INSERT INTO tapeflow.orders (signal_id, parent_id, broker, client_order_id, broker_order_id, symbol, strategy,
                                          purpose, leg, side, qty, limit_price, stop_price, status)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'pending_submit')
             ON CONFLICT (client_order_id) DO UPDATE SET broker_order_id = coalesce(tapeflow.orders.broker_order_id, EXCLUDED.broker_order_id)
             RETURNING {ORDER_COLUMNS}"
        );
        let r = db
            .query_one(
                &sql,
                &[
                    &parent.signal_id,
                    &parent.id,
                    &broker,
                    &coid,
                    &leg.broker_id,
                    &parent.symbol,
                    &parent.strategy,
                    &parent.purpose,
                    &leg.leg.as_str(),
                    &leg.side.as_str(),
                    &leg.qty,
                    &leg.limit_price,
                    &leg.stop_price,
                ],
            )
            .await?;
        out.push((OrderRow::from_row(&r), leg.clone()));
    }
    Ok(out)
}

/// Moves a signal on after its order changed: an entry or exit filled → `filled`; an order
/// that ended unfilled → `cancelled` (or `rejected`).
pub async fn advance_signal(db: &impl GenericClient, row: &OrderRow, status: &str) -> anyhow::Result<()> {
    if !matches!(row.leg.as_str(), "entry" | "market") {
        return Ok(());
    }
    let filled: Decimal =
        db.query_one("SELECT filled_qty FROM tapeflow.orders WHERE id = $1", &[&row.id]).await?.get(0);
    let next = match status {
        "filled" => "filled",
        "rejected" if filled.is_zero() => "rejected",
        s if is_terminal(s) && filled > Decimal::ZERO => "filled",
        s if is_terminal(s) => "cancelled",
        _ => return Ok(()),
    };
    db.execute(
        "UPDATE tapeflow.signals SET status = 'submitted' WHERE id = $1 AND status = 'claimed'",
        &[&row.signal_id],
    )
    .await?;
    db.execute(
        "UPDATE tapeflow.signals SET status = $2, error = CASE WHEN $2 = 'filled' THEN error ELSE coalesce(error, 'order ' || $3) END
         WHERE id = $1 AND status = 'submitted'",
        &[&row.signal_id, &next, &status],
    )
    .await?;
    Ok(())
}

/// Refuses a claimed signal with a gate's code and message.
pub async fn reject_signal(
    db: &impl GenericClient,
    id: i64,
    code: &str,
    message: &str,
) -> anyhow::Result<()> {
    db.execute(
        "UPDATE tapeflow.signals SET status = 'rejected', reject_code = $2, error = $3 WHERE id = $1 AND status IN ('claimed', 'new')",
        &[&id, &code, &message],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_only_move_forward() {
        assert_eq!(next_status("pending_submit", "new"), "new");
        assert_eq!(next_status("filled", "new"), "filled");
        assert_eq!(next_status("partially_filled", "new"), "partially_filled");
        assert_eq!(next_status("new", "partially_filled"), "partially_filled");
        assert_eq!(next_status("partially_filled", "filled"), "filled");
        assert_eq!(next_status("canceled", "filled"), "canceled");
        assert_eq!(next_status("held", "new"), "new");
    }
}
