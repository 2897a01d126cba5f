-- Polymarket arbitrage execution (the polymarket broker of tapeflow-exec): its risk limits and
-- what it records beside sql/021's trades and legs so that a restart never sends a leg twice.

-- Risk limits of arbitrage trading (one row), read at every decision (a change applies at
-- once). The kill switch is tapeflow.risk_limits.trading_enabled, shared with the signal
-- executor: off refuses every new arbitrage trade (paper and live); unwinds of one-legged
-- fills still go out, since they reduce risk.
CREATE TABLE IF NOT EXISTS tapeflow.arbitrage_limits (
    id                  boolean PRIMARY KEY DEFAULT true CHECK (id),
    -- Paper-trade every opportunity (the measurement of item 6). Live trading needs more:
    -- TAPEFLOW_POLYMARKET_LIVE=true and the keys in the executor's environment, and live_enabled.
    paper_enabled       boolean NOT NULL DEFAULT true,
    live_enabled        boolean NOT NULL DEFAULT true,
    -- Refuse an opportunity whose profit per share (per set) after fees is below this.
    min_edge            numeric NOT NULL DEFAULT 0.002 CHECK (min_edge >= 0),
    -- Collateral one trade may commit (buy legs' cost and fees; a sell_both's minting); a
    -- larger opportunity is traded at the size that fits.
    max_trade_capital   numeric NOT NULL DEFAULT 100 CHECK (max_trade_capital > 0),
    -- Collateral held in one market's (or neg-risk group's) positions plus the trade's capital,
    -- and in all markets together, per mode.
    max_market_exposure numeric NOT NULL DEFAULT 500 CHECK (max_market_exposure > 0),
    max_total_exposure  numeric NOT NULL DEFAULT 2000 CHECK (max_total_exposure > 0),
    -- A one-legged fill: 'unwind' sells the unmatched shares back into the bids (the loss is
    -- recorded); 'hold' keeps them to resolution (the loss is marked against the bids and
    -- realised at settlement).
    leg_risk            text NOT NULL DEFAULT 'unwind' CHECK (leg_risk IN ('unwind', 'hold')),
    -- Entry legs: FOK (each leg fills entirely or not at all) or FAK (fills what the book has
    -- at the limit, the rest is cancelled).
    order_type          text NOT NULL DEFAULT 'FOK' CHECK (order_type IN ('FOK', 'FAK')),
    -- Opportunities first seen longer ago than this are not traded (an executor that was
    -- down does not trade stale ones); nor is a leg recorded but not sent within it.
    max_age             interval NOT NULL DEFAULT '30 seconds' CHECK (max_age > '0'),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
INSERT INTO tapeflow.arbitrage_limits (id) VALUES (true) ON CONFLICT DO NOTHING;
COMMENT ON TABLE tapeflow.arbitrage_limits IS 'Risk limits of Polymarket arbitrage trading (one row); the kill switch is risk_limits.trading_enabled.';

-- A change to the limits wakes the executor's arbitrage loop.
CREATE OR REPLACE FUNCTION tapeflow.arbitrage_limits_announce() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tapeflow_arbitrage', json_build_object('event', 'limits')::text);
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS arbitrage_limits_announce ON tapeflow.arbitrage_limits;
CREATE TRIGGER arbitrage_limits_announce AFTER UPDATE ON tapeflow.arbitrage_limits
    FOR EACH ROW EXECUTE FUNCTION tapeflow.arbitrage_limits_announce();

-- Legs: their place in the trade, and the signed order written BEFORE it is sent. The venue's
-- order id is the order's EIP-712 hash, so the id of a leg is known before sending: a restart
-- looks the hash up and, when the venue has no such order, sends the very same signed order
-- (the exchange never fills one hash beyond its amounts).
ALTER TABLE tapeflow.arbitrage_legs
    ADD COLUMN IF NOT EXISTS leg_index    smallint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS condition_id text,
    ADD COLUMN IF NOT EXISTS order_hash   text,
    ADD COLUMN IF NOT EXISTS signed_order jsonb,
    ADD COLUMN IF NOT EXISTS sent_at      timestamptz,
    -- Collateral paid (buy) or received (sell) for filled_size, before fees.
    ADD COLUMN IF NOT EXISTS notional     numeric NOT NULL DEFAULT 0;
-- Its own statement: Citus refuses ADD COLUMN with an inline constraint.
ALTER TABLE tapeflow.arbitrage_legs DROP CONSTRAINT IF EXISTS arbitrage_legs_leg_index_check;
ALTER TABLE tapeflow.arbitrage_legs ADD CONSTRAINT arbitrage_legs_leg_index_check CHECK (leg_index >= 0);
CREATE UNIQUE INDEX IF NOT EXISTS arbitrage_legs_order_hash ON tapeflow.arbitrage_legs (order_hash)
    WHERE order_hash IS NOT NULL;

-- Trades: pnl = matched_pnl + unwind_pnl − (the held shares' marked loss, until settlement
-- replaces it by payout − held_cost). held lists the unmatched shares kept to resolution
-- ([{token_id, condition_id, shares, cost}]: leg_risk = 'hold', or bids too thin to unwind).
ALTER TABLE tapeflow.arbitrage_trades
    ADD COLUMN IF NOT EXISTS matched_pnl numeric,
    ADD COLUMN IF NOT EXISTS unwind_pnl  numeric NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS held_cost   numeric NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS held        jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN IF NOT EXISTS settled_at  timestamptz;
