-- Backtests: persisted runs with their trades, equity curve (one point per bar time),
-- daily statistics and summary statistics. Runs are created by tapeflow.backtest_create()
-- and executed by tapeflow.backtest_execute(); tapeflow.backtest_run() does both.

CREATE TABLE IF NOT EXISTS tapeflow.backtest_runs (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    symbols     text[] NOT NULL CHECK (cardinality(symbols) > 0),
    "from"      timestamptz NOT NULL,
    "to"        timestamptz NOT NULL CHECK ("to" > "from"),
    params      jsonb NOT NULL DEFAULT '{}',
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    error       text,
    progress    double precision NOT NULL DEFAULT 0,
    bars        bigint,
    stats       jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz
);

CREATE TABLE IF NOT EXISTS tapeflow.backtest_trades (
    run_id      bigint NOT NULL REFERENCES tapeflow.backtest_runs (id) ON DELETE CASCADE,
    n           integer NOT NULL,
    symbol      text NOT NULL,
    side        text NOT NULL CHECK (side IN ('long', 'short')),
    quantity    numeric NOT NULL,
    entry_time  timestamptz NOT NULL,
    entry_price numeric NOT NULL,
    exit_time   timestamptz NOT NULL,
    exit_price  numeric NOT NULL,
    pnl         numeric NOT NULL,
    return_pct  double precision NOT NULL,
    fees        numeric NOT NULL,
    exit_reason text NOT NULL,
    mae         numeric NOT NULL,
    mfe         numeric NOT NULL,
    bars        integer NOT NULL,
    entry_reason text NOT NULL,
    PRIMARY KEY (run_id, n)
);

CREATE TABLE IF NOT EXISTS tapeflow.backtest_equity (
    run_id         bigint NOT NULL REFERENCES tapeflow.backtest_runs (id) ON DELETE CASCADE,
    time           timestamptz NOT NULL,
    equity         numeric NOT NULL,
    cash           numeric NOT NULL,
    drawdown       numeric NOT NULL,
    drawdown_pct   double precision NOT NULL,
    open_positions integer NOT NULL,
    PRIMARY KEY (run_id, time)
);

CREATE TABLE IF NOT EXISTS tapeflow.backtest_daily (
    run_id       bigint NOT NULL REFERENCES tapeflow.backtest_runs (id) ON DELETE CASCADE,
    day          date NOT NULL,
    start_equity numeric NOT NULL,
    end_equity   numeric NOT NULL,
    pnl          numeric NOT NULL,
    return_pct   double precision NOT NULL,
    entries      integer NOT NULL,
    trades       integer NOT NULL,
    PRIMARY KEY (run_id, day)
);

-- Registers a run (status pending) after checking its inputs; returns its id.
CREATE OR REPLACE FUNCTION tapeflow.backtest_create(
    symbols text[], "from" timestamptz, "to" timestamptz, params jsonb DEFAULT '{}', name text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    missing text;
    id bigint;
BEGIN
    IF symbols IS NULL OR cardinality(symbols) = 0 THEN
        RAISE EXCEPTION 'backtest: give at least one symbol';
    END IF;
    SELECT string_agg(s, ', ') INTO missing FROM unnest(symbols) s
    WHERE NOT EXISTS (SELECT 1 FROM tapeflow.symbols y WHERE y.symbol = s);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'backtest: unknown symbol(s) %', missing USING HINT = 'see tapeflow.symbols';
    END IF;
    IF "from" IS NULL OR "to" IS NULL OR "to" <= "from" THEN
        RAISE EXCEPTION 'backtest: the range [%, %) is empty', "from", "to";
    END IF;
    PERFORM tapeflow.validate_backtest_params(coalesce(params, '{}'));
    INSERT INTO tapeflow.backtest_runs (name, symbols, "from", "to", params)
    VALUES (coalesce(name, array_to_string(symbols, ',') || ' ' || to_char("from", 'YYYY-MM-DD') || '..' || to_char("to", 'YYYY-MM-DD')),
            symbols, "from", "to", coalesce(params, '{}'))
    RETURNING backtest_runs.id INTO id;
    RETURN id;
END $$;

-- Runs a backtest and persists it in one call; returns the run id (see backtest_runs.status).
CREATE OR REPLACE FUNCTION tapeflow.backtest_run(
    symbols text[], "from" timestamptz, "to" timestamptz, params jsonb DEFAULT '{}', name text DEFAULT NULL)
RETURNS bigint LANGUAGE sql AS $$
    SELECT tapeflow.backtest_execute(tapeflow.backtest_create(symbols, "from", "to", params, name));
$$;
