-- Execution: what tapeflow-exec records while it turns signals into broker orders.
-- orders (one row per order and bracket leg), order_events (append-only, every state change
-- and every broker message verbatim), fills, positions kept from the fills, daily account
-- snapshots, and the risk settings the executor reads at every decision. Money is numeric.

-- Risk settings the executor reads at every decision (a change applies at once).
ALTER TABLE tapeflow.risk_limits
    -- An entry's price must be within this % of the symbol's last trade.
    ADD COLUMN IF NOT EXISTS price_band_pct numeric NOT NULL DEFAULT 1
        CHECK (price_band_pct > 0 AND price_band_pct <= 100),
    -- Close every position at its symbol's last regular-hours bar.
    ADD COLUMN IF NOT EXISTS flat_at_session_end boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS allow_short boolean NOT NULL DEFAULT true;
COMMENT ON COLUMN tapeflow.risk_limits.trading_enabled IS 'Kill switch: off rejects every new entry and cancels open entry orders.';

-- Who claimed a signal, and why it was refused (a gate's code; the message is in error).
ALTER TABLE tapeflow.signals
    ADD COLUMN IF NOT EXISTS claimed_by text,
    ADD COLUMN IF NOT EXISTS reject_code text;
-- flatten_all() and the session-end flattening write exit signals of their own.
ALTER TABLE tapeflow.signals DROP CONSTRAINT IF EXISTS signals_origin_check;
ALTER TABLE tapeflow.signals ADD COLUMN IF NOT EXISTS origin text NOT NULL DEFAULT 'strategy';
ALTER TABLE tapeflow.signals ADD CONSTRAINT signals_origin_check CHECK (origin IN ('strategy', 'flatten', 'session_end'));
CREATE INDEX IF NOT EXISTS signals_claimed ON tapeflow.signals (status, id) WHERE status IN ('claimed', 'submitted');

-- A strategy config may trade outside the regular session.
ALTER TABLE tapeflow.strategy_configs
    ADD COLUMN IF NOT EXISTS extended_hours boolean NOT NULL DEFAULT false;

CREATE TABLE IF NOT EXISTS tapeflow.orders (
    id               bigserial PRIMARY KEY,
    signal_id        bigint NOT NULL REFERENCES tapeflow.signals (id),
    -- The entry of a bracket for its take-profit and stop-loss legs.
    parent_id        bigint REFERENCES tapeflow.orders (id),
    broker           text NOT NULL,
    -- Derived from the signal id (tf-<signal>-entry / -exit; legs -tp / -sl): the idempotency key.
    client_order_id  text NOT NULL UNIQUE,
    broker_order_id  text,
    symbol           text NOT NULL REFERENCES tapeflow.symbols (symbol),
    strategy         text NOT NULL,
    purpose          text NOT NULL CHECK (purpose IN ('entry', 'exit')),
    leg              text NOT NULL CHECK (leg IN ('entry', 'take_profit', 'stop_loss', 'market')),
    side             text NOT NULL CHECK (side IN ('buy', 'sell')),
    qty              numeric NOT NULL CHECK (qty > 0),
    limit_price      numeric,
    stop_price       numeric,
    -- pending_submit (recorded, not yet acknowledged) then the broker's states: new,
    -- accepted, pending_new, partially_filled, filled, canceled, expired, rejected, ...
    status           text NOT NULL DEFAULT 'pending_submit',
    filled_qty       numeric NOT NULL DEFAULT 0 CHECK (filled_qty >= 0),
    filled_avg_price numeric,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (broker, broker_order_id)
);
CREATE INDEX IF NOT EXISTS orders_open ON tapeflow.orders (status)
    WHERE status NOT IN ('filled', 'canceled', 'expired', 'rejected', 'replaced', 'done_for_day');
CREATE INDEX IF NOT EXISTS orders_signal ON tapeflow.orders (signal_id);
COMMENT ON TABLE tapeflow.orders IS 'One row per order and bracket leg. client_order_id is derived from the signal, so a restarted executor finds what it sent before sending again.';

CREATE TABLE IF NOT EXISTS tapeflow.order_events (
    id       bigserial PRIMARY KEY,
    order_id bigint NOT NULL REFERENCES tapeflow.orders (id),
    time     timestamptz NOT NULL DEFAULT now(),
    event    text NOT NULL,
    status   text NOT NULL,
    -- The broker's message verbatim, or what the executor did.
    raw      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS order_events_order ON tapeflow.order_events (order_id, id);
COMMENT ON TABLE tapeflow.order_events IS 'Append-only: every state change of every order and every broker message, raw. Announced on tapeflow_orders.';

CREATE OR REPLACE FUNCTION tapeflow.order_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tapeflow.order_events is append-only (% refused)', TG_OP;
END $$;
DROP TRIGGER IF EXISTS order_events_append_only ON tapeflow.order_events;
CREATE TRIGGER order_events_append_only BEFORE UPDATE OR DELETE ON tapeflow.order_events
    FOR EACH ROW EXECUTE FUNCTION tapeflow.order_events_append_only();

CREATE OR REPLACE FUNCTION tapeflow.order_events_announce() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    o tapeflow.orders;
BEGIN
    SELECT * INTO o FROM tapeflow.orders WHERE id = NEW.order_id;
    PERFORM pg_notify('tapeflow_orders', json_build_object(
        'event_id', NEW.id, 'order_id', o.id, 'signal_id', o.signal_id, 'client_order_id', o.client_order_id,
        'symbol', o.symbol, 'strategy', o.strategy, 'leg', o.leg, 'side', o.side, 'event', NEW.event,
        'status', NEW.status, 'qty', o.qty, 'filled_qty', o.filled_qty, 'filled_avg_price', o.filled_avg_price)::text);
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS order_events_announce ON tapeflow.order_events;
CREATE TRIGGER order_events_announce AFTER INSERT ON tapeflow.order_events
    FOR EACH ROW EXECUTE FUNCTION tapeflow.order_events_announce();

-- Positions per symbol and strategy, kept by the fills trigger below: signed quantity
-- (negative = short), average entry price, realised P&L net of fees. Rows stay when flat, so
-- realised P&L accumulates.
CREATE TABLE IF NOT EXISTS tapeflow.position_book (
    symbol       text NOT NULL REFERENCES tapeflow.symbols (symbol),
    strategy     text NOT NULL,
    qty          numeric NOT NULL DEFAULT 0,
    avg_price    numeric NOT NULL DEFAULT 0,
    realised_pnl numeric NOT NULL DEFAULT 0,
    fees         numeric NOT NULL DEFAULT 0,
    -- The entry signal of the open position, and its bracket levels.
    entry_signal bigint REFERENCES tapeflow.signals (id),
    stop         numeric,
    target       numeric,
    opened_at    timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, strategy)
);

CREATE TABLE IF NOT EXISTS tapeflow.fills (
    id           bigserial PRIMARY KEY,
    order_id     bigint NOT NULL REFERENCES tapeflow.orders (id),
    broker       text NOT NULL,
    -- The broker's execution id: a fill reported twice (stream and reconciliation) is stored once.
    execution_id text NOT NULL,
    symbol       text NOT NULL,
    strategy     text NOT NULL,
    side         text NOT NULL CHECK (side IN ('buy', 'sell')),
    qty          numeric NOT NULL CHECK (qty > 0),
    price        numeric NOT NULL CHECK (price > 0),
    fee          numeric NOT NULL DEFAULT 0 CHECK (fee >= 0),
    time         timestamptz NOT NULL,
    -- Realised P&L of this fill (net of its fee and of the closed part's entry fees).
    realised_pnl numeric NOT NULL DEFAULT 0,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (broker, execution_id)
);
CREATE INDEX IF NOT EXISTS fills_time ON tapeflow.fills (time);

-- Applies a fill to its position: adds to it at a new average price, or reduces (and maybe
-- reverses) it, realising (exit - average) × closed quantity (long; the mirror short), less
-- fees. An opening fill's fee is carried in the position and realised when it closes, so a
-- round trip's realised P&L equals the backtest's trade P&L.
CREATE OR REPLACE FUNCTION tapeflow.fills_apply() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    p tapeflow.position_book;
    signed numeric := CASE NEW.side WHEN 'buy' THEN NEW.qty ELSE -NEW.qty END;
    closing numeric := 0;
    pnl numeric := 0;
    carried numeric := 0;
    o tapeflow.orders;
    s tapeflow.signals;
BEGIN
    SELECT * INTO o FROM tapeflow.orders WHERE id = NEW.order_id;
    SELECT * INTO s FROM tapeflow.signals WHERE id = o.signal_id;
    INSERT INTO tapeflow.position_book (symbol, strategy) VALUES (NEW.symbol, NEW.strategy)
        ON CONFLICT DO NOTHING;
    SELECT * INTO p FROM tapeflow.position_book WHERE symbol = NEW.symbol AND strategy = NEW.strategy FOR UPDATE;
    IF p.qty <> 0 AND sign(p.qty) <> sign(signed) THEN
        closing := least(abs(p.qty), NEW.qty);
        -- The part of the fees carried since opening that belongs to the closed quantity.
        carried := round(p.fees * closing / abs(p.qty), 8);
        pnl := (NEW.price - p.avg_price) * closing * sign(p.qty) - carried
               - round(NEW.fee * closing / NEW.qty, 8);
        p.fees := p.fees - carried;
        p.qty := p.qty + sign(signed) * closing;
        p.realised_pnl := p.realised_pnl + pnl;
    END IF;
    IF NEW.qty > closing THEN
        -- Opening or adding (what is left after closing): a new average price; the rest of the fee is carried.
        p.avg_price := CASE WHEN p.qty = 0 THEN NEW.price
                            ELSE (p.avg_price * abs(p.qty) + NEW.price * (NEW.qty - closing)) / (abs(p.qty) + NEW.qty - closing) END;
        IF p.qty = 0 THEN
            p.opened_at := NEW.time;
            p.entry_signal := CASE WHEN s.kind = 'entry' THEN s.id END;
            p.stop := CASE WHEN s.kind = 'entry' THEN s.stop END;
            p.target := CASE WHEN s.kind = 'entry' THEN s.target END;
        END IF;
        p.qty := p.qty + sign(signed) * (NEW.qty - closing);
        p.fees := p.fees + NEW.fee - round(NEW.fee * closing / NEW.qty, 8);
    END IF;
    IF p.qty = 0 THEN
        p.avg_price := 0;
        p.entry_signal := NULL;
        p.stop := NULL;
        p.target := NULL;
        p.opened_at := NULL;
    END IF;
    UPDATE tapeflow.position_book SET qty = p.qty, avg_price = p.avg_price, realised_pnl = p.realised_pnl,
        fees = p.fees, entry_signal = p.entry_signal, stop = p.stop, target = p.target, opened_at = p.opened_at,
        updated_at = now()
    WHERE symbol = NEW.symbol AND strategy = NEW.strategy;
    NEW.realised_pnl := pnl;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS fills_apply ON tapeflow.fills;
CREATE TRIGGER fills_apply BEFORE INSERT ON tapeflow.fills
    FOR EACH ROW EXECUTE FUNCTION tapeflow.fills_apply();

-- The last trade of a symbol (what positions are marked to).
CREATE OR REPLACE FUNCTION tapeflow.last_price(sym text) RETURNS double precision
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN (SELECT price FROM tapeflow.ticks WHERE symbol = sym ORDER BY time DESC LIMIT 1);

-- Open positions marked to the last trade. Replaces the outbox-derived view of 005.
DROP VIEW IF EXISTS tapeflow.positions;
CREATE VIEW tapeflow.positions AS
SELECT b.symbol, b.strategy, CASE WHEN b.qty > 0 THEN 'long' ELSE 'short' END AS side,
       abs(b.qty) AS quantity, b.avg_price, b.stop, b.target, b.opened_at, b.entry_signal,
       m.last::numeric AS last_price,
       round((m.last::numeric - b.avg_price) * b.qty, 8) AS unrealised_pnl,
       b.realised_pnl, b.fees AS open_fees
FROM tapeflow.position_book b
LEFT JOIN LATERAL (SELECT tapeflow.last_price(b.symbol) AS last) m ON true
WHERE b.qty <> 0;
COMMENT ON VIEW tapeflow.positions IS 'Open positions per symbol and strategy from the fills, unrealised P&L marked to the symbol''s last trade.';

-- Daily account snapshots: the day's starting equity (the daily loss limit's reference) and
-- the latest reading, per broker. day is the UTC date.
CREATE TABLE IF NOT EXISTS tapeflow.account_snapshots (
    broker         text NOT NULL,
    day            date NOT NULL,
    start_equity   numeric NOT NULL,
    equity         numeric NOT NULL,
    cash           numeric NOT NULL,
    buying_power   numeric NOT NULL,
    realised_pnl   numeric NOT NULL DEFAULT 0,
    unrealised_pnl numeric NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (broker, day)
);

-- Inside the symbol's regular trading hours at ts (a 24-hour market is always inside).
CREATE OR REPLACE FUNCTION tapeflow.in_regular_session(sym text, ts timestamptz) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN s.session_open = s.session_close THEN true
                WHEN s.session_open < s.session_close
                     THEN ts < (tapeflow.session_date(ts, s.timezone, s.session_open) + s.session_close) AT TIME ZONE s.timezone
                ELSE ts < (tapeflow.session_date(ts, s.timezone, s.session_open) + 1 + s.session_close) AT TIME ZONE s.timezone END
    FROM tapeflow.symbol_row(sym) s
$$;

-- A change to the risk settings wakes the executor (the kill switch cancels open entries).
CREATE OR REPLACE FUNCTION tapeflow.risk_limits_announce() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tapeflow_risk', json_build_object('trading_enabled', NEW.trading_enabled)::text);
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS risk_limits_announce ON tapeflow.risk_limits;
CREATE TRIGGER risk_limits_announce AFTER UPDATE ON tapeflow.risk_limits
    FOR EACH ROW EXECUTE FUNCTION tapeflow.risk_limits_announce();

-- Closes every open position: one exit signal per position (origin 'flatten'), carried out
-- by the executor like any exit (open bracket legs cancelled, then a market order). Returns
-- the signals written.
CREATE OR REPLACE FUNCTION tapeflow.flatten_all(reason text DEFAULT 'flatten_all')
RETURNS SETOF tapeflow.signals LANGUAGE sql VOLATILE AS $$
    INSERT INTO tapeflow.signals (bar, symbol, strategy, kind, side, entry, quantity, reason, origin, expires_at)
    SELECT tapeflow.minute(now()), p.symbol, p.strategy, 'exit', CASE p.side WHEN 'long' THEN 'sell' ELSE 'buy' END,
           coalesce(p.last_price, p.avg_price), p.quantity, reason, 'flatten', now() + interval '1 day'
    FROM tapeflow.positions p
    WHERE NOT EXISTS (SELECT 1 FROM tapeflow.signals x WHERE x.symbol = p.symbol AND x.strategy = p.strategy
                      AND x.kind = 'exit' AND x.status IN ('new', 'claimed', 'submitted'))
    ON CONFLICT DO NOTHING
    RETURNING *
$$;
COMMENT ON FUNCTION tapeflow.flatten_all(text) IS 'Closes every open position through the executor: writes one exit signal per position and returns them.';

-- The simulated broker's own book (the venue side of `TAPEFLOW_BROKER=sim`): kept apart from
-- tapeflow.orders exactly as a real venue is, so a crash between the venue and the executor's
-- records is reconciled the same way for every broker.
CREATE TABLE IF NOT EXISTS tapeflow.sim_orders (
    broker_id        text PRIMARY KEY,
    client_order_id  text NOT NULL UNIQUE,
    parent_id        text REFERENCES tapeflow.sim_orders (broker_id),
    symbol           text NOT NULL REFERENCES tapeflow.symbols (symbol),
    side             text NOT NULL CHECK (side IN ('buy', 'sell')),
    leg              text NOT NULL CHECK (leg IN ('entry', 'take_profit', 'stop_loss', 'market')),
    qty              numeric NOT NULL CHECK (qty > 0),
    limit_price      numeric,
    stop_price       numeric,
    -- held (a leg waiting for its entry), new, filled, canceled
    status           text NOT NULL,
    filled_qty       numeric NOT NULL DEFAULT 0,
    filled_avg_price numeric,
    fee              numeric NOT NULL DEFAULT 0,
    filled_at        timestamptz,
    -- Fills happen on closed minute bars after this one (the signal's bar, then the last bar seen).
    checked_through  timestamptz NOT NULL,
    reason           text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sim_orders_open ON tapeflow.sim_orders (symbol) WHERE status IN ('new', 'held');
CREATE SEQUENCE IF NOT EXISTS tapeflow.sim_order_ids;
