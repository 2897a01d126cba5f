-- Live strategy: configuration, risk limits, evaluated-bar log, alerts and the signals outbox.

CREATE TABLE IF NOT EXISTS tapeflow.strategy_configs (
    symbol     text NOT NULL REFERENCES tapeflow.symbols (symbol),
    strategy   text NOT NULL DEFAULT 'amt' CHECK (strategy IN ('amt')),
    enabled    boolean NOT NULL DEFAULT true,
    -- Overrides of the engine's defaults, e.g. {"strategy": {"min_aggression_score": 60}}.
    params     jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, strategy)
);
COMMENT ON TABLE tapeflow.strategy_configs IS 'Which symbols the live scheduler evaluates, with which parameters (validated on write: unknown keys and out-of-range values are errors naming them).';

CREATE OR REPLACE FUNCTION tapeflow.strategy_configs_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tapeflow.validate_params(NEW.params);
    NEW.updated_at := now();
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS strategy_configs_check ON tapeflow.strategy_configs;
CREATE TRIGGER strategy_configs_check BEFORE INSERT OR UPDATE ON tapeflow.strategy_configs
    FOR EACH ROW EXECUTE FUNCTION tapeflow.strategy_configs_check();

-- Global limits: one row. The executor enforces the order limits; the scheduler the timing.
CREATE TABLE IF NOT EXISTS tapeflow.risk_limits (
    id                 boolean PRIMARY KEY DEFAULT true CHECK (id),
    trading_enabled    boolean NOT NULL DEFAULT true,
    max_positions      integer NOT NULL DEFAULT 3 CHECK (max_positions BETWEEN 1 AND 1000),
    max_daily_loss_pct numeric NOT NULL DEFAULT 3 CHECK (max_daily_loss_pct > 0 AND max_daily_loss_pct <= 100),
    max_order_notional numeric NOT NULL DEFAULT 25000 CHECK (max_order_notional > 0),
    -- Equity used to size suggested quantities (the executor re-sizes with the broker's).
    account_equity     numeric NOT NULL DEFAULT 100000 CHECK (account_equity > 0),
    -- A minute bar is closed once its end is this far in the past, even with no later tick.
    bar_grace          interval NOT NULL DEFAULT '2 seconds' CHECK (bar_grace >= '0' AND bar_grace < '1 minute'),
    -- An entry signal not claimed within this time expires.
    signal_ttl         interval NOT NULL DEFAULT '2 minutes' CHECK (signal_ttl > '0')
);
INSERT INTO tapeflow.risk_limits DEFAULT VALUES ON CONFLICT DO NOTHING;

-- One row per evaluated (symbol, strategy, bar): the live market-state history.
CREATE TABLE IF NOT EXISTS tapeflow.market_state_log (
    symbol           text NOT NULL,
    strategy         text NOT NULL,
    bar              timestamptz NOT NULL,
    state            text NOT NULL,
    confidence       double precision NOT NULL,
    aggression       double precision NOT NULL,
    direction        text NOT NULL,
    momentum_pct     double precision,
    atr              double precision,
    buy_pressure     double precision NOT NULL,
    sell_pressure    double precision NOT NULL,
    delta            double precision NOT NULL,
    cvd              double precision NOT NULL,
    poc              double precision,
    vah              double precision,
    val              double precision,
    lvn              double precision,
    lvn_distance_pct double precision,
    signal           text,
    evaluated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, strategy, bar)
);

CREATE TABLE IF NOT EXISTS tapeflow.alerts (
    id      bigserial PRIMARY KEY,
    time    timestamptz NOT NULL DEFAULT now(),
    bar     timestamptz NOT NULL,
    symbol  text NOT NULL,
    kind    text NOT NULL CHECK (kind IN ('lvn_proximity', 'state_change')),
    message text NOT NULL,
    data    jsonb NOT NULL DEFAULT '{}',
    UNIQUE (symbol, bar, kind)
);

CREATE TABLE IF NOT EXISTS tapeflow.signals (
    id           bigserial PRIMARY KEY,
    time         timestamptz NOT NULL DEFAULT now(),
    bar          timestamptz NOT NULL,
    symbol       text NOT NULL REFERENCES tapeflow.symbols (symbol),
    strategy     text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('entry', 'exit')),
    -- The order side: buy opens a long or closes a short.
    side         text NOT NULL CHECK (side IN ('buy', 'sell')),
    entry        numeric NOT NULL,
    stop         numeric,
    target       numeric,
    quantity     numeric NOT NULL DEFAULT 0 CHECK (quantity >= 0),
    reason       text NOT NULL,
    inputs       jsonb NOT NULL DEFAULT '{}',
    status       text NOT NULL DEFAULT 'new'
                 CHECK (status IN ('new', 'claimed', 'submitted', 'filled', 'rejected', 'cancelled', 'expired')),
    expires_at   timestamptz,
    claimed_at   timestamptz,
    submitted_at timestamptz,
    filled_at    timestamptz,
    closed_at    timestamptz,
    error        text,
    UNIQUE (symbol, strategy, bar, kind)
);
-- At most one open entry signal per symbol and strategy.
CREATE UNIQUE INDEX IF NOT EXISTS signals_one_open_entry ON tapeflow.signals (symbol, strategy)
    WHERE kind = 'entry' AND status IN ('new', 'claimed', 'submitted');
CREATE INDEX IF NOT EXISTS signals_pending ON tapeflow.signals (status, id) WHERE status = 'new';
COMMENT ON TABLE tapeflow.signals IS 'Signals outbox: status new -> claimed -> submitted -> filled | rejected | cancelled; new -> expired. NOTIFY on tapeflow_signals only wakes listeners; they re-read pending rows after every reconnect.';

-- Status may only move forward.
CREATE OR REPLACE FUNCTION tapeflow.signals_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = OLD.status THEN
        RETURN NEW;
    END IF;
    IF NOT ((OLD.status = 'new' AND NEW.status IN ('claimed', 'expired', 'cancelled', 'rejected'))
         OR (OLD.status = 'claimed' AND NEW.status IN ('submitted', 'rejected', 'cancelled'))
         OR (OLD.status = 'submitted' AND NEW.status IN ('filled', 'rejected', 'cancelled'))) THEN
        RAISE EXCEPTION 'signal %: status cannot change from % to %', OLD.id, OLD.status, NEW.status;
    END IF;
    CASE NEW.status
        WHEN 'claimed' THEN NEW.claimed_at := coalesce(NEW.claimed_at, now());
        WHEN 'submitted' THEN NEW.submitted_at := coalesce(NEW.submitted_at, now());
        WHEN 'filled' THEN NEW.filled_at := coalesce(NEW.filled_at, now());
        ELSE NEW.closed_at := coalesce(NEW.closed_at, now());
    END CASE;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS signals_transition ON tapeflow.signals;
CREATE TRIGGER signals_transition BEFORE UPDATE OF status ON tapeflow.signals
    FOR EACH ROW EXECUTE FUNCTION tapeflow.signals_transition();

CREATE OR REPLACE FUNCTION tapeflow.signals_announce() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tapeflow_signals', json_build_object(
        'id', NEW.id, 'symbol', NEW.symbol, 'kind', NEW.kind, 'side', NEW.side, 'status', NEW.status)::text);
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS signals_announce ON tapeflow.signals;
CREATE TRIGGER signals_announce AFTER INSERT ON tapeflow.signals
    FOR EACH ROW EXECUTE FUNCTION tapeflow.signals_announce();

-- Open positions as the outbox records them: the newest filled entry with no filled exit after it.
CREATE OR REPLACE VIEW tapeflow.positions AS
SELECT e.symbol, e.strategy, CASE e.side WHEN 'buy' THEN 'long' ELSE 'short' END AS side,
       e.quantity, e.entry, e.stop, e.target, e.filled_at AS opened_at, e.id AS entry_signal
FROM (
    SELECT DISTINCT ON (symbol, strategy) * FROM tapeflow.signals
    WHERE kind = 'entry' AND status = 'filled' ORDER BY symbol, strategy, filled_at DESC, id DESC
) e
WHERE NOT EXISTS (
    SELECT 1 FROM tapeflow.signals x
    WHERE x.symbol = e.symbol AND x.strategy = e.strategy AND x.kind = 'exit' AND x.status = 'filled'
      AND x.id > e.id
);

-- The dashboard's watchlist: last price, change since the previous trading day's last price,
-- the trading day's volume, and the live market state and aggression, per active symbol.
CREATE OR REPLACE VIEW tapeflow.watchlist AS
SELECT s.symbol, s.name, s.exchange, s.asset_class,
       tapeflow.close(l.candle) AS last,
       round(((tapeflow.close(l.candle) / p.prev_close - 1) * 100)::numeric, 2)::float8 AS change_pct,
       d.volume,
       l.bucket AS updated,
       m.state,
       round(m.aggression::numeric, 1)::float8 AS aggression
FROM tapeflow.symbols s
LEFT JOIN LATERAL (
    SELECT b.bucket, b.candle FROM tapeflow.bars_1m b WHERE b.symbol = s.symbol ORDER BY b.bucket DESC LIMIT 1
) l ON true
LEFT JOIN LATERAL (
    SELECT sum(tapeflow.volume(b.candle)) AS volume FROM tapeflow.bars_1m b
    WHERE b.symbol = s.symbol AND b.bucket >= tapeflow.bar_start(l.bucket, '1d', s.timezone, s.session_open)
) d ON true
LEFT JOIN LATERAL (
    SELECT tapeflow.close(b.candle) AS prev_close FROM tapeflow.bars_1m b
    WHERE b.symbol = s.symbol AND b.bucket < tapeflow.bar_start(l.bucket, '1d', s.timezone, s.session_open)
    ORDER BY b.bucket DESC LIMIT 1
) p ON true
LEFT JOIN LATERAL (
    SELECT g.state, g.aggression FROM tapeflow.market_state_log g
    WHERE g.symbol = s.symbol ORDER BY g.bar DESC LIMIT 1
) m ON true
WHERE s.active;
COMMENT ON VIEW tapeflow.watchlist IS 'Per active symbol: last price, % change vs the previous trading day''s last price, the trading day''s volume, live market state and aggression.';
