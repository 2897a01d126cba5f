// Headless-browser test of the arbitrage page against a running tapeflow-web, its database and
// a tapeflow-exec paper-trading it (tests/tests/arbitrage_page.rs seeds two markets, one of
// whose books offers a buy_both). What the page shows is compared with what SQL says; then a
// book is changed through SQL while the page is open and the page must follow (SSE).
//
// Env: TAPEFLOW_WEB_URL, TAPEFLOW_WEB_USER / TAPEFLOW_WEB_PASSWORD (a trader),
// TAPEFLOW_WEB_VIEWER / TAPEFLOW_WEB_VIEWER_PASSWORD (a viewer), TAPEFLOW_TEST_DATABASE_URL,
// TAPEFLOW_ARB_LIVE_MARKET (the market whose book the test changes) and TAPEFLOW_ARB_LIVE_SQL
// (the statement that changes it), TAPEFLOW_SCREENSHOT_DIR (default ../target), CHROMIUM_PATH.
// Without a database URL the tests are skipped.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium, psql } from './harness.mjs';
import { loggedInContext } from './login.mjs';

const webDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const baseUrl = process.env.TAPEFLOW_WEB_URL || 'http://127.0.0.1:8080';
const dbUrl = process.env.TAPEFLOW_TEST_DATABASE_URL;
const shots = path.resolve(process.env.TAPEFLOW_SCREENSHOT_DIR || path.join(webDir, '..', 'target'));
const liveMarket = process.env.TAPEFLOW_ARB_LIVE_MARKET;
const liveSql = process.env.TAPEFLOW_ARB_LIVE_SQL;
const skip = dbUrl && liveMarket && liveSql ? false : 'needs TAPEFLOW_TEST_DATABASE_URL and the live change (see arbitrage_page.rs)';
const LIVE_TIMEOUT = 20_000;

/** Rows of `query` (one json value per row) from the database. */
function rows(query) {
  return JSON.parse(psql(dbUrl, `SELECT coalesce(json_agg(x), '[]') FROM (${query}) x`));
}
const q = (s) => `'${String(s).replace(/'/g, "''")}'`;

// The sums as the arbitrage functions charge fees: shares × rate × (p(1 − p))^exponent; the
// seeded markets have exponent 1, written out here rather than read from the server's query.
const MARKETS_SQL = `SELECT m.condition_id,
    trim_scale(y.best_ask)::text AS yes_ask, trim_scale(n.best_ask)::text AS no_ask,
    trim_scale(y.best_ask + n.best_ask)::text AS ask_sum,
    trim_scale(y.best_ask + n.best_ask + m.fee_rate * y.best_ask * (1 - y.best_ask)
                + m.fee_rate * n.best_ask * (1 - n.best_ask))::text AS ask_sum_after_fees,
    y.best_ask + n.best_ask + m.fee_rate * y.best_ask * (1 - y.best_ask) + m.fee_rate * n.best_ask * (1 - n.best_ask) < 1 AS pays,
    trim_scale(y.best_bid + n.best_bid)::text AS bid_sum
  FROM tapeflow.polymarket_markets m
  JOIN tapeflow.polymarket_tokens yt ON yt.condition_id = m.condition_id AND yt.outcome_index = 0
  JOIN tapeflow.polymarket_books y ON y.token_id = yt.token_id
  JOIN tapeflow.polymarket_tokens nt ON nt.condition_id = m.condition_id AND nt.outcome_index = 1
  JOIN tapeflow.polymarket_books n ON n.token_id = nt.token_id
  WHERE m.watched AND NOT m.closed ORDER BY m.condition_id`;

const OPPS_SQL = `SELECT id, closed_at IS NULL AS open, trim_scale(size)::text AS size, trim_scale(edge)::text AS edge,
    trim_scale(profit)::text AS profit, trim_scale(fees)::text AS fees, jsonb_array_length(legs) AS legs
  FROM tapeflow.arbitrage_opportunities ORDER BY id`;

const TRADES_SQL = `SELECT t.id, t.opportunity_id, t.mode, t.status, trim_scale(t.matched_size)::text AS matched_size,
    trim_scale(t.fees)::text AS fees, trim_scale(t.pnl)::text AS pnl, trim_scale(t.leg_risk_loss)::text AS leg_risk_loss,
    (SELECT count(*) FROM tapeflow.arbitrage_legs l WHERE l.trade_id = t.id) AS legs, t.leg_risk_loss > 0 AS leg_risk
  FROM tapeflow.arbitrage_trades t ORDER BY t.id`;

const REPORT_SQL = `SELECT day::text, market_key, kind, opportunities, trim_scale(paper_pnl)::text AS paper_pnl,
    trim_scale(fill_rate)::text AS fill_rate, trim_scale(leg_risk_losses)::text AS leg_risk_losses, paper_trades
  FROM tapeflow.arbitrage_report ORDER BY day, market_key, kind`;

let browser;
before(async () => {
  if (skip) return;
  browser = await launchChromium();
  await mkdir(shots, { recursive: true });
});
after(() => browser?.close());

async function openArbitrage(who) {
  const context = await loggedInContext(browser, baseUrl, { viewport: { width: 1440, height: 1200 } }, who);
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('response', (res) => {
    if (res.status() >= 400) problems.push(`HTTP ${res.status()}: ${res.url()}`);
  });
  await page.goto(`${baseUrl}/#/arbitrage`, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('#view-arbitrage:not([hidden]) #arb-markets tbody tr', { timeout: 15_000 });
  return { context, page, problems };
}

/** What the page shows: every row of the five tables with its data-* keys and cell values. */
const shown = (page) => page.evaluate(() => {
  const table = (id) => [...document.querySelectorAll(`#${id} tbody tr`)].map((tr) => {
    const cells = {};
    for (const td of tr.cells) cells[td.dataset.field] = { text: td.textContent, value: td.dataset.value ?? null, cls: td.className };
    return { ...tr.dataset, cls: tr.className, cells };
  });
  const view = document.querySelector('#view-arbitrage');
  return {
    markets: table('arb-markets'), opps: table('arb-opps'), trades: table('arb-trades'), positions: table('arb-positions'),
    report: table('arb-report'), events: Number(view.dataset.events ?? 0), reads: Number(view.dataset.reads ?? 0),
    bars: [...document.querySelectorAll('#arb-chart rect.bar')].map((r) => ({ day: r.dataset.day, value: r.dataset.value })),
    lossBars: document.querySelectorAll('#arb-chart rect.loss').length,
  };
});

/** The page's markets, opportunities, trades and report match SQL, row for row. */
function assertMatchesSql(s) {
  const markets = rows(MARKETS_SQL);
  assert.deepEqual(s.markets.map((m) => m.condition).sort(), markets.map((m) => m.condition_id).sort(), 'one row per watched market');
  for (const m of markets) {
    const row = s.markets.find((r) => r.condition === m.condition_id);
    for (const f of ['yes_ask', 'no_ask', 'ask_sum', 'ask_sum_after_fees', 'bid_sum']) {
      assert.equal(row.cells[f].value, m[f], `${m.condition_id} ${f}`);
    }
    assert.equal(row.cells.ask_sum_after_fees.cls.includes('sum-buy'), m.pays, `${m.condition_id}: highlighted iff below 1 after fees`);
  }
  const opps = rows(OPPS_SQL);
  assert.deepEqual(s.opps.map((o) => Number(o.id)).sort((a, b) => a - b), opps.map((o) => o.id), 'every opportunity');
  const firstClosed = s.opps.findIndex((o) => o.open === 'false');
  if (firstClosed >= 0) assert.ok(s.opps.slice(firstClosed).every((o) => o.open === 'false'), 'open ones first');
  for (const o of opps) {
    const row = s.opps.find((r) => Number(r.id) === o.id);
    assert.equal(row.open, String(o.open), `opportunity ${o.id} open`);
    for (const f of ['size', 'edge', 'profit', 'fees']) assert.equal(row.cells[f].value, o[f], `opportunity ${o.id} ${f}`);
    assert.equal(row.cells.legs.text.split(/(?=buy |sell )/).length, o.legs, `opportunity ${o.id} legs`);
  }
  const trades = rows(TRADES_SQL);
  assert.deepEqual(s.trades.map((t) => Number(t.id)).sort((a, b) => a - b), trades.map((t) => t.id), 'every trade');
  for (const t of trades) {
    const row = s.trades.find((r) => Number(r.id) === t.id);
    assert.equal(row.opportunity, String(t.opportunity_id));
    assert.equal(row.mode, t.mode);
    for (const f of ['status', 'matched_size', 'fees', 'pnl', 'leg_risk_loss']) assert.equal(row.cells[f].value, t[f], `trade ${t.id} ${f}`);
    assert.equal((row.cells.legs.text.match(/(entry|unwind|settle) /g) ?? []).length, Number(t.legs), `trade ${t.id} legs`);
    assert.equal(row.cls.includes('leg-risk'), t.leg_risk, `trade ${t.id}: marked iff it lost to leg risk`);
  }
  const report = rows(REPORT_SQL);
  assert.equal(s.report.length, report.length, 'one report row per day, market and kind');
  for (const r of report) {
    const row = s.report.find((x) => x.day === r.day && x.market === r.market_key && x.kind === r.kind);
    assert.ok(row, `report row ${r.day} ${r.market_key}`);
    for (const f of ['paper_pnl', 'fill_rate', 'leg_risk_losses']) assert.equal(row.cells[f].value, r[f], `report ${r.market_key} ${f}`);
    assert.equal(Number(row.cells.opportunities.value), r.opportunities);
  }
  const days = rows(`SELECT day::text, trim_scale(sum(paper_pnl))::text AS pnl, sum(leg_risk_losses) > 0 AS losses
    FROM tapeflow.arbitrage_report WHERE day > (now() AT TIME ZONE 'UTC')::date - 30 GROUP BY day ORDER BY day`);
  assert.deepEqual(s.bars, days.map((d) => ({ day: d.day, value: d.pnl })), 'one bar per day: its paper P&L');
  assert.equal(s.lossBars, days.filter((d) => d.losses).length, 'a leg-risk bar for each day with losses');
  const positions = rows(`SELECT mode, condition_id, trim_scale(sum(cost) FILTER (WHERE shares > 0))::text AS cost
    FROM tapeflow.polymarket_positions GROUP BY 1, 2 ORDER BY 1, 2`);
  assert.equal(s.positions.length, positions.length, 'one positions row per mode and market');
  for (const p of positions) {
    const row = s.positions.find((x) => x.mode === p.mode && x.condition === p.condition_id);
    assert.equal(row.cells.cost.value, p.cost, `position ${p.condition_id} cost`);
  }
}

test('arbitrage page: sums, opportunities, paper trades, positions and report are what SQL says; a book change shows live',
  { skip, timeout: 120_000 }, async () => {
    const { context, page, problems } = await openArbitrage();
    try {
      // The seeded opportunity has been paper-traded before the page opened.
      await page.waitForSelector('#arb-trades tbody tr[data-mode="paper"]', { timeout: 15_000 });
      await page.waitForSelector('#arb-chart rect.bar', { timeout: 15_000 });
      const before = await shown(page);
      assertMatchesSql(before);
      assert.ok(before.opps.some((o) => o.open === 'true'), 'the seeded opportunity is open');
      assert.ok(before.markets.some((m) => m.cells.ask_sum_after_fees.cls.includes('sum-buy')), 'a market is highlighted');
      assert.ok(before.trades.some((t) => t.cls.includes('leg-risk')), 'the one-legged trade is marked');
      assert.ok(before.lossBars > 0, 'its loss is drawn');
      const tradedBefore = rows(TRADES_SQL).length;
      const oppsBefore = rows(OPPS_SQL).length;

      // A book of the quiet market changes so that buying both pays: the trigger opens an
      // opportunity and announces it; the page must show the new sums and the opportunity, and
      // then the executor's paper trade of it.
      psql(dbUrl, liveSql);
      assert.ok(rows(OPPS_SQL).length > oppsBefore, 'the change opened an opportunity (see TAPEFLOW_ARB_LIVE_SQL)');
      const [expected] = rows(`${MARKETS_SQL.replace('ORDER BY m.condition_id', '')} AND m.condition_id = ${q(liveMarket)}`);
      // Shown by a read the event caused (the page does not poll).
      await page.waitForFunction(({ cond, sum, opps }) => {
        const cell = document.querySelector(`#arb-markets tr[data-condition="${cond}"] td[data-field="ask_sum"]`);
        return cell?.dataset.value === sum && document.querySelectorAll('#arb-opps tbody tr').length === opps
          && document.querySelector('#view-arbitrage').dataset.reason === 'event';
      }, { cond: liveMarket, sum: expected.ask_sum, opps: oppsBefore + 1 }, { timeout: LIVE_TIMEOUT });
      const eventsSeen = await page.evaluate(() => Number(document.querySelector('#view-arbitrage').dataset.events ?? 0));
      assert.ok(eventsSeen > before.events, 'an arbitrage event reached the page over SSE');
      // The trade follows the opportunity without an announcement of its own: the page's second read gets it.
      const deadline = Date.now() + LIVE_TIMEOUT;
      while (rows(TRADES_SQL).filter((t) => t.status === 'filled').length <= tradedBefore && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
      }
      const trades = rows(TRADES_SQL);
      await page.waitForFunction((n) => document.querySelectorAll('#arb-trades tbody tr').length === n, trades.length,
        { timeout: LIVE_TIMEOUT });
      // Let any read under way land, then everything matches SQL again.
      await page.waitForTimeout(2000);
      assertMatchesSql(await shown(page));
      await page.screenshot({ path: path.join(shots, 'arbitrage.png'), fullPage: true });
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

test('a viewer sees the arbitrage page, with no controls that change anything', { skip, timeout: 60_000 }, async () => {
  const who = { name: process.env.TAPEFLOW_WEB_VIEWER, password: process.env.TAPEFLOW_WEB_VIEWER_PASSWORD };
  const { context, page, problems } = await openArbitrage(who);
  try {
    const role = await page.evaluate(async () => (await (await fetch('/api/session')).json()).role);
    assert.equal(role, 'viewer');
    await page.waitForSelector('#arb-trades tbody tr', { timeout: 15_000 });
    assertMatchesSql(await shown(page));
    const controls = await page.locator('#view-arbitrage :is(button, input, select, textarea, form)').count();
    assert.equal(controls, 0, 'the page is read-only');
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});
