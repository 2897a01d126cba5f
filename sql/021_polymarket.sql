-- Polymarket binary options: markets and their outcome tokens (written by the polymarket
-- provider of tapeflow-feed from Gamma and the market channel), the current depth of every
-- token's book (replaced on change), fee-aware arbitrage opportunities kept current from those
-- books, and the paper/live arbitrage trades, legs, positions and settlements the polymarket
-- broker of tapeflow-exec records. Prices and sizes are numeric in the venue's units: prices in
-- collateral (pUSD) per share, between 0 and 1; sizes in shares.

-- One row per binary market (a Gamma market = one CLOB condition).
CREATE TABLE IF NOT EXISTS tapeflow.polymarket_markets (
    -- The CLOB condition id (0x + 64 hex), the `market` field of every WS message.
    condition_id     text PRIMARY KEY CHECK (condition_id <> ''),
    gamma_id         text UNIQUE,
    question         text NOT NULL,
    slug             text,
    description      text,
    tags             text[] NOT NULL DEFAULT '{}',
    end_date         timestamptz,
    -- Gamma's event; neg_risk_market_id groups the binary markets of one multi-outcome
    -- (neg-risk) event: exactly one of them resolves YES.
    event_id         text,
    event_slug       text,
    neg_risk         boolean NOT NULL DEFAULT false,
    neg_risk_market_id text,
    -- An augmented neg-risk event may still gain outcomes (an unnamed "other" can win), so
    -- buying every listed YES is not riskless there: the scan skips such groups.
    neg_risk_augmented boolean NOT NULL DEFAULT false,
    min_order_size   numeric NOT NULL DEFAULT 0 CHECK (min_order_size >= 0),
    -- The venue's current order tick; it changes at run time (tick_size_change).
    tick_size        numeric CHECK (tick_size > 0 AND tick_size < 1),
    -- Taker fee per fill = shares × fee_rate × (p × (1 − p))^fee_exponent, in collateral;
    -- makers pay nothing. fee_rate is a fraction (0.04 = 4 %), not basis points.
    fee_rate         numeric NOT NULL DEFAULT 0 CHECK (fee_rate >= 0 AND fee_rate < 1),
    fee_exponent     integer NOT NULL DEFAULT 1 CHECK (fee_exponent BETWEEN 0 AND 8),
    active           boolean NOT NULL DEFAULT true,
    closed           boolean NOT NULL DEFAULT false,
    accepting_orders boolean NOT NULL DEFAULT true,
    -- Whether the arbitrage scan and the trigger look at this market.
    watched          boolean NOT NULL DEFAULT true,
    resolved_at      timestamptz,
    winning_token_id text,
    winning_outcome  text,
    -- Gamma's market object verbatim (fields not mapped above).
    raw              jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS polymarket_markets_neg_risk ON tapeflow.polymarket_markets (neg_risk_market_id)
    WHERE neg_risk_market_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS polymarket_markets_watched ON tapeflow.polymarket_markets (condition_id)
    WHERE watched AND NOT closed;
COMMENT ON TABLE tapeflow.polymarket_markets IS 'Polymarket binary markets (one CLOB condition each) from Gamma, kept current by new_market / market_resolved; fee parameters and tick size per market.';

-- The outcome tokens of a market; each is a tapeflow.symbols row (asset_class prediction,
-- provider polymarket, provider_ref = token_id).
CREATE TABLE IF NOT EXISTS tapeflow.polymarket_tokens (
    token_id      text PRIMARY KEY CHECK (token_id <> ''),
    condition_id  text NOT NULL REFERENCES tapeflow.polymarket_markets (condition_id) ON DELETE CASCADE,
    -- The outcome's label as Gamma lists it ("Yes", "No", a team...), and its position in
    -- Gamma's outcomes/clobTokenIds (0 is YES of a Yes/No market).
    outcome       text NOT NULL,
    outcome_index smallint NOT NULL CHECK (outcome_index >= 0),
    symbol        text UNIQUE REFERENCES tapeflow.symbols (symbol) ON UPDATE CASCADE,
    winner        boolean,
    UNIQUE (condition_id, outcome_index)
);
COMMENT ON TABLE tapeflow.polymarket_tokens IS 'Outcome tokens (CLOB asset ids) of each market, outcome_index as in Gamma''s clobTokenIds; symbol is the token''s tapeflow.symbols row.';

-- A side of a book is valid when prices and sizes pair up, every price is inside (0, 1),
-- every size positive, and prices run strictly best-first (descending for bids, ascending
-- for asks). Empty sides are valid.
CREATE OR REPLACE FUNCTION tapeflow.polymarket_side_valid(prices numeric[], sizes numeric[], descending boolean)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(cardinality(prices), 0) = coalesce(cardinality(sizes), 0)
       AND coalesce(array_ndims(prices), 1) = 1 AND coalesce(array_ndims(sizes), 1) = 1
       AND NOT EXISTS (
           SELECT 1 FROM unnest(prices, sizes) WITH ORDINALITY AS l (p, s, i)
           WHERE p IS NULL OR s IS NULL OR p <= 0 OR p >= 1 OR s <= 0
              OR (i > 1 AND CASE WHEN descending THEN p >= prices[i - 1] ELSE p <= prices[i - 1] END))
$$;

-- The current depth of each token's book, replaced as a whole on change (the feed keeps the
-- full book in memory and writes it, throttled). Levels best-first: bid_prices descending
-- (the best bid is the HIGHEST), ask_prices ascending (the best ask is the lowest).
CREATE TABLE IF NOT EXISTS tapeflow.polymarket_books (
    token_id     text PRIMARY KEY REFERENCES tapeflow.polymarket_tokens (token_id) ON DELETE CASCADE,
    -- Denormalised from polymarket_tokens so the arbitrage trigger needs no join.
    condition_id text NOT NULL REFERENCES tapeflow.polymarket_markets (condition_id) ON DELETE CASCADE,
    bid_prices   numeric[] NOT NULL DEFAULT '{}',
    bid_sizes    numeric[] NOT NULL DEFAULT '{}',
    ask_prices   numeric[] NOT NULL DEFAULT '{}',
    ask_sizes    numeric[] NOT NULL DEFAULT '{}',
    best_bid     numeric GENERATED ALWAYS AS (bid_prices[1]) STORED,
    best_ask     numeric GENERATED ALWAYS AS (ask_prices[1]) STORED,
    -- The venue's hash of the book (of the last book or price_change applied), as sent.
    hash         text,
    tick_size    numeric CHECK (tick_size > 0 AND tick_size < 1),
    -- The venue's timestamp of the last message applied, and when this row was written.
    venue_time   timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT polymarket_books_bids_valid CHECK (tapeflow.polymarket_side_valid(bid_prices, bid_sizes, true)),
    CONSTRAINT polymarket_books_asks_valid CHECK (tapeflow.polymarket_side_valid(ask_prices, ask_sizes, false))
);
CREATE INDEX IF NOT EXISTS polymarket_books_condition ON tapeflow.polymarket_books (condition_id);
COMMENT ON TABLE tapeflow.polymarket_books IS 'Current depth per token, best level first (bids descending, asks ascending), replaced on change; a trigger keeps tapeflow.arbitrage_opportunities current.';

-- Detection parameters (one row): the scan and the trigger use them.
CREATE TABLE IF NOT EXISTS tapeflow.arbitrage_settings (
    id                     boolean PRIMARY KEY DEFAULT true CHECK (id),
    -- Minimum profit per share (per pair, or per set for neg-risk) after fees, in collateral.
    min_edge               numeric NOT NULL DEFAULT 0.001 CHECK (min_edge >= 0),
    -- Minimum size in shares per leg (a market's min_order_size applies as well).
    min_size               numeric NOT NULL DEFAULT 0 CHECK (min_size >= 0),
    -- Markets resolving sooner than this are skipped (NULL end dates never are).
    min_time_to_resolution interval NOT NULL DEFAULT '0' CHECK (min_time_to_resolution >= '0'),
    -- Caps the reported size per leg (NULL: as deep as the books allow).
    max_size               numeric CHECK (max_size > 0),
    -- Off: the trigger stops maintaining opportunities (the functions still answer).
    enabled                boolean NOT NULL DEFAULT true,
    updated_at             timestamptz NOT NULL DEFAULT now()
);
INSERT INTO tapeflow.arbitrage_settings (id) VALUES (true) ON CONFLICT DO NOTHING;

-- Opportunities as detected from the books: one open row per market (or neg-risk group) and
-- kind, updated while it lasts (edge, size, legs, fees, last_seen), closed (closed_at) when
-- the books no longer offer it. A later reappearance is a new row. Announced on
-- tapeflow_arbitrage.
CREATE TABLE IF NOT EXISTS tapeflow.arbitrage_opportunities (
    id           bigserial PRIMARY KEY,
    -- buy_both: buy YES and NO of one market (payout 1 per pair at resolution);
    -- sell_both: sell YES and NO held (proceeds above 1 per pair);
    -- buy_all_yes: buy YES of every market of a neg-risk event (exactly one pays 1).
    kind         text NOT NULL CHECK (kind IN ('buy_both', 'sell_both', 'buy_all_yes')),
    -- The condition id (buy_both, sell_both) or the neg_risk_market_id (buy_all_yes).
    market_key   text NOT NULL,
    condition_id text REFERENCES tapeflow.polymarket_markets (condition_id) ON DELETE CASCADE,
    -- Shares per leg (every leg trades the same count).
    size         numeric NOT NULL CHECK (size > 0),
    -- Profit per share after fees = profit / size.
    edge         numeric NOT NULL,
    -- Total after fees: payout − cost − fees (buy), proceeds − fees − payout (sell).
    profit       numeric NOT NULL,
    -- Σ price × shares over every leg (what is paid, or received when selling).
    notional     numeric NOT NULL CHECK (notional >= 0),
    fees         numeric NOT NULL CHECK (fees >= 0),
    -- [{token_id, outcome, side ('buy'|'sell'), shares, avg_price, worst_price, notional, fee,
    --   levels}], worst_price being the limit price that fills the leg (FOK/FAK).
    legs         jsonb NOT NULL CHECK (jsonb_typeof(legs) = 'array'),
    first_seen   timestamptz NOT NULL DEFAULT now(),
    last_seen    timestamptz NOT NULL DEFAULT now(),
    -- How many book changes updated it, and the best profit it showed.
    updates      integer NOT NULL DEFAULT 0,
    max_profit   numeric NOT NULL,
    closed_at    timestamptz,
    CHECK (closed_at IS NULL OR closed_at >= first_seen),
    CHECK (kind = 'buy_all_yes' OR condition_id = market_key)
);
CREATE UNIQUE INDEX IF NOT EXISTS arbitrage_opportunities_open
    ON tapeflow.arbitrage_opportunities (market_key, kind) WHERE closed_at IS NULL;
CREATE INDEX IF NOT EXISTS arbitrage_opportunities_seen ON tapeflow.arbitrage_opportunities (first_seen);
COMMENT ON TABLE tapeflow.arbitrage_opportunities IS 'Fee-aware arbitrage opportunities kept current from tapeflow.polymarket_books (one open row per market_key and kind; closed_at set when gone); announced on tapeflow_arbitrage.';

-- One arbitrage trade per opportunity and mode: paper (the default; simulated fills walk
-- tapeflow.polymarket_books) or live. The (opportunity_id, mode) key is the idempotency key.
CREATE TABLE IF NOT EXISTS tapeflow.arbitrage_trades (
    id              bigserial PRIMARY KEY,
    opportunity_id  bigint NOT NULL REFERENCES tapeflow.arbitrage_opportunities (id),
    mode            text NOT NULL DEFAULT 'paper' CHECK (mode IN ('paper', 'live')),
    kind            text NOT NULL CHECK (kind IN ('buy_both', 'sell_both', 'buy_all_yes')),
    market_key      text NOT NULL,
    -- pending (recorded, legs not yet sent), submitted, filled (every leg fully), partial
    -- (legs filled unequally, awaiting unwind), unwound (the excess sold back), held (the
    -- excess kept by configuration), rejected (a risk gate: reject_code), failed (no leg
    -- filled, or an error), settled (resolved and paid).
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'submitted', 'filled', 'partial', 'unwound', 'held',
                                      'rejected', 'failed', 'settled')),
    -- What the opportunity promised when the trade was decided.
    planned_size    numeric NOT NULL CHECK (planned_size > 0),
    planned_edge    numeric NOT NULL,
    planned_profit  numeric NOT NULL,
    -- Matched sets (pairs) actually held, cost/proceeds and fees of every entry leg.
    matched_size    numeric NOT NULL DEFAULT 0 CHECK (matched_size >= 0),
    notional        numeric NOT NULL DEFAULT 0,
    fees            numeric NOT NULL DEFAULT 0 CHECK (fees >= 0),
    -- Loss realised by unwinding (or marking) the unmatched part of a one-legged fill, ≥ 0.
    leg_risk_loss   numeric NOT NULL DEFAULT 0 CHECK (leg_risk_loss >= 0),
    -- P&L after fees of the matched sets (locked at fill for buy/sell both; realised at
    -- settlement for held positions), leg-risk loss already subtracted.
    pnl             numeric,
    reject_code     text,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    filled_at       timestamptz,
    closed_at       timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (opportunity_id, mode)
);
CREATE INDEX IF NOT EXISTS arbitrage_trades_open ON tapeflow.arbitrage_trades (status)
    WHERE status IN ('pending', 'submitted', 'partial');
CREATE INDEX IF NOT EXISTS arbitrage_trades_created ON tapeflow.arbitrage_trades (created_at);
COMMENT ON TABLE tapeflow.arbitrage_trades IS 'Paper and live arbitrage trades, one per opportunity and mode (the idempotency key); pnl after fees and leg-risk losses.';

-- Every order of a trade: the entry legs, unwind orders of a one-legged fill, and the
-- settlement of a held token. client_order_id is derived from the trade (idempotency).
CREATE TABLE IF NOT EXISTS tapeflow.arbitrage_legs (
    id              bigserial PRIMARY KEY,
    trade_id        bigint NOT NULL REFERENCES tapeflow.arbitrage_trades (id),
    purpose         text NOT NULL DEFAULT 'entry' CHECK (purpose IN ('entry', 'unwind', 'settle')),
    token_id        text NOT NULL REFERENCES tapeflow.polymarket_tokens (token_id),
    side            text NOT NULL CHECK (side IN ('buy', 'sell')),
    order_type      text NOT NULL DEFAULT 'FOK' CHECK (order_type IN ('FOK', 'FAK', 'GTC', 'GTD')),
    limit_price     numeric CHECK (limit_price > 0 AND limit_price < 1),
    size            numeric NOT NULL CHECK (size > 0),
    client_order_id text NOT NULL UNIQUE,
    broker_order_id text,
    -- pending_submit (recorded, not yet sent or acknowledged) then the venue's states
    -- (matched, live, delayed, unmatched...) or filled / canceled / rejected.
    status          text NOT NULL DEFAULT 'pending_submit',
    filled_size     numeric NOT NULL DEFAULT 0 CHECK (filled_size >= 0),
    avg_price       numeric CHECK (avg_price >= 0 AND avg_price <= 1),
    fee             numeric NOT NULL DEFAULT 0 CHECK (fee >= 0),
    error           text,
    -- The venue's responses verbatim (or the paper fills: the levels walked).
    raw             jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS arbitrage_legs_trade ON tapeflow.arbitrage_legs (trade_id, id);
COMMENT ON TABLE tapeflow.arbitrage_legs IS 'Orders of arbitrage trades (entry legs, unwinds, settlements); client_order_id derived from the trade so a restart never sends a leg twice.';

-- Token positions per mode, kept by the broker from its legs; settled at market_resolved.
CREATE TABLE IF NOT EXISTS tapeflow.polymarket_positions (
    mode         text NOT NULL CHECK (mode IN ('paper', 'live')),
    token_id     text NOT NULL REFERENCES tapeflow.polymarket_tokens (token_id),
    condition_id text NOT NULL REFERENCES tapeflow.polymarket_markets (condition_id),
    shares       numeric NOT NULL DEFAULT 0 CHECK (shares >= 0),
    -- Collateral paid for the shares held (fees separate), for the average price.
    cost         numeric NOT NULL DEFAULT 0,
    fees         numeric NOT NULL DEFAULT 0 CHECK (fees >= 0),
    realised_pnl numeric NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mode, token_id)
);

-- One settlement per market and mode when it resolves: held shares of the winner pay 1 each.
CREATE TABLE IF NOT EXISTS tapeflow.polymarket_settlements (
    mode             text NOT NULL CHECK (mode IN ('paper', 'live')),
    condition_id     text NOT NULL REFERENCES tapeflow.polymarket_markets (condition_id),
    winning_token_id text NOT NULL,
    payout           numeric NOT NULL CHECK (payout >= 0),
    cost             numeric NOT NULL DEFAULT 0,
    pnl              numeric NOT NULL,
    settled_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mode, condition_id)
);

-- Measurement (issue item 6): per UTC day of first sight and per market (or neg-risk group),
-- how many opportunities there were, what they showed, and what paper trading them made after
-- fees: fill_rate = matched sets / planned sets over the trades not refused by a risk gate;
-- leg_risk_losses = losses of unwinding one-legged fills. Live figures beside them.
CREATE OR REPLACE VIEW tapeflow.arbitrage_report AS
SELECT (o.first_seen AT TIME ZONE 'UTC')::date AS day,
       o.market_key,
       o.kind,
       coalesce(max(m.question), max(g.event_slug), o.market_key) AS label,
       count(*) AS opportunities,
       sum(o.max_profit) AS detected_profit,
       count(p.id) AS paper_trades,
       count(p.id) FILTER (WHERE p.matched_size > 0) AS paper_filled,
       CASE WHEN sum(p.planned_size) FILTER (WHERE p.status <> 'rejected') > 0
            THEN round(sum(p.matched_size) FILTER (WHERE p.status <> 'rejected')
                       / sum(p.planned_size) FILTER (WHERE p.status <> 'rejected'), 4) END AS fill_rate,
       coalesce(sum(p.pnl), 0) AS paper_pnl,
       coalesce(sum(p.fees), 0) AS paper_fees,
       coalesce(sum(p.leg_risk_loss), 0) AS leg_risk_losses,
       count(l.id) AS live_trades,
       coalesce(sum(l.pnl), 0) AS live_pnl
FROM tapeflow.arbitrage_opportunities o
LEFT JOIN tapeflow.polymarket_markets m ON m.condition_id = o.condition_id
LEFT JOIN LATERAL (SELECT event_slug FROM tapeflow.polymarket_markets
                   WHERE o.kind = 'buy_all_yes' AND neg_risk_market_id = o.market_key LIMIT 1) g ON true
LEFT JOIN tapeflow.arbitrage_trades p ON p.opportunity_id = o.id AND p.mode = 'paper'
LEFT JOIN tapeflow.arbitrage_trades l ON l.opportunity_id = o.id AND l.mode = 'live'
GROUP BY 1, o.market_key, o.kind;
COMMENT ON VIEW tapeflow.arbitrage_report IS 'Per day and market: opportunities, detected profit, paper trades, fill rate, paper P&L after fees, leg-risk losses, live trades and P&L.';

-- Keeps tapeflow.arbitrage_opportunities current for `markets` (condition ids) and their
-- neg-risk groups, from tapeflow.arbitrage_scan over the watched ones among them: a new
-- opportunity opens a row, one still offered updates its row (size, edge, profit, fees, legs,
-- last_seen), one no longer offered is closed (closed_at). Each opening, change of size, edge or
-- profit, and closing is announced on tapeflow_arbitrage as json {event: opened|updated|closed,
-- id, kind, market_key, condition_id, size, edge, profit, fees}; read the row for its legs.
-- Returns the number of announcements.
CREATE OR REPLACE FUNCTION tapeflow.arbitrage_refresh(markets text[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    keys text[];
    watched_markets text[];
    n integer;
BEGIN
    SELECT array_agg(DISTINCT k) INTO keys FROM (
        SELECT unnest(markets) AS k
        UNION
        SELECT neg_risk_market_id FROM tapeflow.polymarket_markets
        WHERE condition_id = ANY (markets) AND neg_risk AND neg_risk_market_id IS NOT NULL) s
    WHERE k IS NOT NULL;
    SELECT coalesce(array_agg(condition_id), '{}') INTO watched_markets FROM tapeflow.polymarket_markets
    WHERE condition_id = ANY (markets) AND watched;
    WITH found AS (
        SELECT * FROM tapeflow.arbitrage_scan(watched_markets)
    ), prev AS (
        SELECT id, size, edge, profit FROM tapeflow.arbitrage_opportunities
        WHERE closed_at IS NULL AND market_key = ANY (keys)
    ), upserted AS (
        INSERT INTO tapeflow.arbitrage_opportunities AS o
            (kind, market_key, condition_id, size, edge, profit, notional, fees, legs, max_profit)
        SELECT kind, market_key, condition_id, size, edge, profit, notional, fees, legs, profit FROM found
        ON CONFLICT (market_key, kind) WHERE closed_at IS NULL DO UPDATE
            SET size = EXCLUDED.size, edge = EXCLUDED.edge, profit = EXCLUDED.profit,
                notional = EXCLUDED.notional, fees = EXCLUDED.fees, legs = EXCLUDED.legs,
                last_seen = now(), updates = o.updates + 1,
                max_profit = greatest(o.max_profit, EXCLUDED.profit)
        RETURNING o.*
    ), closed AS (
        UPDATE tapeflow.arbitrage_opportunities o SET closed_at = greatest(now(), o.first_seen)
        FROM prev p
        WHERE o.id = p.id
          AND NOT EXISTS (SELECT 1 FROM found f WHERE f.market_key = o.market_key AND f.kind = o.kind)
        RETURNING o.*
    ), events AS (
        SELECT CASE WHEN p.id IS NULL THEN 'opened' ELSE 'updated' END AS event, u.*
        FROM upserted u LEFT JOIN prev p ON p.id = u.id
        WHERE p.id IS NULL OR (p.size, p.edge, p.profit) IS DISTINCT FROM (u.size, u.edge, u.profit)
        UNION ALL
        SELECT 'closed', c.* FROM closed c
    )
    -- pg_notify returns void, which count() would skip: count the IS NULL test of it.
    SELECT count(pg_notify('tapeflow_arbitrage', json_build_object(
               'event', e.event, 'id', e.id, 'kind', e.kind, 'market_key', e.market_key,
               'condition_id', e.condition_id, 'size', e.size, 'edge', e.edge, 'profit', e.profit,
               'fees', e.fees)::text) IS NULL)
    INTO n FROM events e;
    RETURN n;
END $$;
COMMENT ON FUNCTION tapeflow.arbitrage_refresh(text[]) IS 'Opens, updates and closes tapeflow.arbitrage_opportunities of the given markets (and their neg-risk groups) from their current books; announces each change on tapeflow_arbitrage. Called by the triggers on polymarket_books and polymarket_markets.';

-- Book writes (and market changes: closing, resolution, fees, watching) refresh the
-- opportunities of the markets they touch, once per statement.
CREATE OR REPLACE FUNCTION tapeflow.polymarket_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    markets text[];
BEGIN
    IF NOT coalesce((SELECT enabled FROM tapeflow.arbitrage_settings), false) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT condition_id) INTO markets FROM old_rows;
    ELSE
        SELECT array_agg(DISTINCT condition_id) INTO markets FROM new_rows;
    END IF;
    IF markets IS NOT NULL THEN
        PERFORM tapeflow.arbitrage_refresh(markets);
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS polymarket_books_inserted ON tapeflow.polymarket_books;
CREATE TRIGGER polymarket_books_inserted AFTER INSERT ON tapeflow.polymarket_books
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tapeflow.polymarket_changed();
DROP TRIGGER IF EXISTS polymarket_books_updated ON tapeflow.polymarket_books;
CREATE TRIGGER polymarket_books_updated AFTER UPDATE ON tapeflow.polymarket_books
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tapeflow.polymarket_changed();
DROP TRIGGER IF EXISTS polymarket_books_deleted ON tapeflow.polymarket_books;
CREATE TRIGGER polymarket_books_deleted AFTER DELETE ON tapeflow.polymarket_books
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tapeflow.polymarket_changed();
DROP TRIGGER IF EXISTS polymarket_markets_updated ON tapeflow.polymarket_markets;
CREATE TRIGGER polymarket_markets_updated AFTER UPDATE ON tapeflow.polymarket_markets
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tapeflow.polymarket_changed();
