// Headless-browser test of the symbol, strategies, feeds and backtest-results pages against
// a running tapeflow-web and its database: what the pages draw is compared with what the
// extension's SQL functions return for the same inputs.
//
//   TAPEFLOW_WEB_URL=http://127.0.0.1:8080 TAPEFLOW_TEST_DATABASE_URL=postgresql://… \
//     node --test web/browser-test/pages.test.mjs
// Env: TAPEFLOW_WEB_URL, TAPEFLOW_WEB_USER and TAPEFLOW_WEB_PASSWORD (a trader), TAPEFLOW_TEST_DATABASE_URL
// (the server's database: read for the expected values, and written to: a live tick, a
// strategy error, feed_status rows), TAPEFLOW_SCREENSHOT_DIR (default ../target from web/),
// TAPEFLOW_PAGES_SYMBOL (default AAPL), CHROMIUM_PATH. Without a database URL (the mock
// server) the tests are skipped.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium, psql } from './harness.mjs';
import { fmtAtTick } from '../static/js/format.js';
import { loggedInContext, sessionApi } from './login.mjs';

const webDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const baseUrl = process.env.TAPEFLOW_WEB_URL || 'http://127.0.0.1:8080';
const dbUrl = process.env.TAPEFLOW_TEST_DATABASE_URL;
const shots = path.resolve(process.env.TAPEFLOW_SCREENSHOT_DIR || path.join(webDir, '..', 'target'));
const SYMBOL = process.env.TAPEFLOW_PAGES_SYMBOL || 'AAPL';
const skip = dbUrl ? false : 'needs TAPEFLOW_TEST_DATABASE_URL (the real server and its database)';
const LIVE_TIMEOUT = 20_000;

/** One value (or JSON, for a query returning json) from the database. */
function sql(query, { json = false } = {}) {
  const out = psql(dbUrl, query);
  return json ? JSON.parse(out || 'null') : out;
}

/** The message of the error `query` raises (as the server reports it: without "ERROR:"). */
function sqlError(query) {
  try {
    sql(query);
  } catch (err) {
    const m = /ERROR:\s+(.*)/.exec(String(err.stderr));
    return m ? m[1].trim() : String(err.stderr);
  }
  throw new Error(`expected an error from ${query}`);
}

const q = (s) => `'${String(s).replace(/'/g, "''")}'`;
const sec = (iso) => Date.parse(iso) / 1000;

let browser;
let context;
let api;
before(async () => {
  if (skip) return;
  browser = await launchChromium();
  context = await loggedInContext(browser, baseUrl, { viewport: { width: 1440, height: 900 } });
  api = await sessionApi(context, baseUrl);
  await mkdir(shots, { recursive: true });
});
after(() => browser?.close());

/** A page recording uncaught errors and failed requests; `allowed(url, status)` says which
 *  refusals the test provokes on purpose. */
async function openPage(allowed = () => false) {
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('requestfailed', (req) => {
    if (!req.url().endsWith('/events')) problems.push(`request failed: ${req.url()} ${req.failure()?.errorText}`);
  });
  page.on('response', (res) => {
    if (res.status() >= 400 && !allowed(new URL(res.url()), res.status())) problems.push(`HTTP ${res.status()}: ${res.url()}`);
  });
  return { page, problems };
}

const symbolState = (page, fn, arg) => page.evaluate(fn, arg);

test('symbol page: profile, developing value area, CVD and footprint are the SQL functions\'; a new tick moves it',
  { skip, timeout: 150_000 }, async (t) => {
    // The value-area share the test sets out of range is refused by both profile reads.
    const { page, problems } = await openPage((url, status) => status === 400
      && /\/(profile|developing)$/.test(url.pathname) && url.searchParams.get('va_pct') === '1.5');
    try {
      // Reached from the watchlist row.
      await page.goto(`${baseUrl}/#/`, { waitUntil: 'domcontentloaded' });
      const link = page.locator(`#watchlist tr[data-symbol="${SYMBOL}"] a.open`);
      await link.waitFor({ timeout: 15_000 });
      await link.click();
      await page.waitForURL(new RegExp(`#/symbol/${SYMBOL}$`));
      await page.waitForSelector('#sym-chart canvas', { state: 'visible', timeout: 15_000 });
      await page.waitForFunction(() => Number(document.querySelector('#sym-chart').dataset.bars) > 0, null,
        { timeout: 15_000 });

      // One tick per row: the session profile exactly as tapeflow.session_profile holds it.
      const profileRead = page.waitForResponse((r) => r.url().includes('/profile?') && r.url().includes('ticks_per_row=1&'));
      await page.fill('#sym-tpr', '1');
      await page.press('#sym-tpr', 'Enter');
      await profileRead;
      await page.waitForFunction(() => document.querySelector('#sym-overlay').dataset.poc !== undefined
        && document.querySelector('#sym-overlay').dataset.rows !== undefined, null, { timeout: 10_000 });
      const day = sql(`SELECT tapeflow.session_date(max(b.bucket), s.timezone, s.session_open)
        FROM tapeflow.bars_1m b, tapeflow.symbols s WHERE b.symbol = ${q(SYMBOL)} AND s.symbol = b.symbol GROUP BY s.symbol`);
      const tick = Number(sql(`SELECT tick_size FROM tapeflow.symbols WHERE symbol = ${q(SYMBOL)}`));
      const va = sql(`SELECT row_to_json(v) FROM tapeflow.value_area(tapeflow.session_profile(${q(SYMBOL)}, ${q(day)}),
        0.70, 'dalton') v`, { json: true });
      const levels = Number(sql(`SELECT count(*) FROM tapeflow.levels(tapeflow.session_profile(${q(SYMBOL)}, ${q(day)}))`));
      const nodes = sql(`SELECT json_build_object('lvns', tapeflow.lvns(p), 'hvns', tapeflow.hvns(p))
        FROM (SELECT tapeflow.session_profile(${q(SYMBOL)}, ${q(day)}) p) x`, { json: true });
      const lines = await symbolState(page, () => window.tapeflow.symbol.priceLines());
      const line = (title) => lines.find((l) => l.title === title)?.price;
      assert.deepEqual({ poc: line('POC'), vah: line('VAH'), val: line('VAL') }, { poc: va.poc, vah: va.vah, val: va.val },
        'the POC, VAH and VAL lines are tapeflow.value_area of the session profile');
      const overlay = page.locator('#sym-overlay');
      assert.equal(await overlay.getAttribute('data-day'), day);
      assert.equal(Number(await overlay.getAttribute('data-rows')), levels, 'one histogram row per level');
      assert.equal(await page.locator('#sym-profile dd[data-key="POC"]').textContent(), fmtAtTick(va.poc, tick));
      assert.equal(await page.locator('#sym-profile dd[data-key="VAH"]').textContent(), fmtAtTick(va.vah, tick));
      assert.equal(await page.locator('#sym-profile dd[data-key="VAL"]').textContent(), fmtAtTick(va.val, tick));
      assert.equal(await page.locator('#sym-hvns span').count(), nodes.hvns.length, 'every HVN listed');
      assert.equal(await page.locator('#sym-lvns span').count(), nodes.lvns.length, 'every LVN listed');

      // The developing POC / value area drawn through the session: developing_profile's last row.
      const dev = sql(`SELECT row_to_json(d) FROM tapeflow.developing_profile(${q(SYMBOL)}, ${q(day)}, '5m') d
        ORDER BY d.time DESC LIMIT 1`, { json: true });
      const drawnDev = await symbolState(page, (s) => window.tapeflow.symbol.developingDrawn(s), day);
      assert.ok(drawnDev, `developing lines of session ${day} are drawn`);
      assert.deepEqual([drawnDev.poc.time, drawnDev.poc.value, drawnDev.vah.value, drawnDev.val.value],
        [sec(dev.time), dev.poc, dev.vah, dev.val], 'the developing lines end on developing_profile\'s last bar');

      // The CVD pane's last value: order_flow's last cvd (reset at the session open).
      const flowLast = () => sql(`SELECT row_to_json(f) FROM tapeflow.order_flow(${q(SYMBOL)}, '5m',
        now() - interval '4 days', now() + interval '1 hour') f ORDER BY f.time DESC LIMIT 1`, { json: true });
      const flow = flowLast();
      const cvd = await symbolState(page, () => window.tapeflow.symbol.cvdDrawn());
      assert.deepEqual([cvd.time, cvd.value], [sec(flow.time), flow.cvd], 'the CVD pane ends on order_flow\'s last cvd');
      assert.equal(Number(await page.locator('#sym-delta').getAttribute('data-cvd-last')), flow.cvd);

      // The market-state band is drawn from the states the server read.
      assert.ok(Number(await page.locator('#sym-band').getAttribute('data-states')) > 0, 'market states drawn');
      const source = await page.locator('#sym-band').getAttribute('data-source');
      assert.ok(['log', 'history'].includes(source), `states from ${source}`);

      // A setting the SQL parser refuses: its message, beside the field.
      await page.fill('#sym-va', '150');
      await page.press('#sym-va', 'Enter');
      const vaError = page.locator('[data-error-for="va_pct"]');
      await vaError.waitFor({ state: 'visible', timeout: 10_000 });
      assert.equal(await vaError.textContent(),
        sqlError("SELECT tapeflow.vah(p, 1.5, 'dalton') FROM (SELECT tapeflow.profile_agg(1, 1, 'B', 0.01) p) x"));
      // Back to 70 %, and ticks per row left to the page (about 100 rows) for the picture.
      await page.fill('#sym-va', '70');
      await page.fill('#sym-tpr', '');
      await page.press('#sym-va', 'Enter');
      await vaError.waitFor({ state: 'hidden', timeout: 10_000 });
      await page.waitForFunction(() => Number(document.querySelector('#sym-overlay').dataset.rows) < 200, null,
        { timeout: 10_000 });
      await page.mouse.move(5, 5);
      await page.waitForTimeout(500);
      await page.screenshot({ path: path.join(shots, 'symbol.png') });
      await page.fill('#sym-tpr', '1');
      await page.press('#sym-tpr', 'Enter');

      // The footprint of the last bars: tapeflow.footprint's cells, footprint_imbalances' marks.
      await page.click('#sym-mode button[data-mode="footprint"]');
      await page.waitForFunction(() => Number(document.querySelector('#sym-chart').dataset.footprintCells) > 0, null,
        { timeout: 15_000 });
      const last = await symbolState(page, () => window.tapeflow.symbol.bars.at(-1));
      const from = new Date(last.time * 1000).toISOString();
      const cell = sql(`SELECT row_to_json(f) FROM tapeflow.footprint(${q(SYMBOL)}, '5m', ${q(from)},
        ${q(from)}::timestamptz + interval '5 minutes') f ORDER BY f.volume DESC, f.price LIMIT 1`, { json: true });
      const drawnCell = await symbolState(page, ([time, price]) => window.tapeflow.symbol.footprintCell(time, price),
        [sec(cell.time), cell.price]);
      assert.deepEqual([drawnCell.bid, drawnCell.ask, drawnCell.volume],
        [cell.bid_volume, cell.ask_volume, cell.volume], 'the footprint cell is tapeflow.footprint\'s');
      const at = await symbolState(page, ([time, price]) => window.tapeflow.symbol.pointOf(time, price),
        [sec(cell.time), cell.price]);
      // Hovering a cell (one tick is a pixel or two high: whichever cell is under the
      // pointer) tells its bid × ask, tapeflow.footprint's for that bar and price.
      await page.mouse.move(at.x, at.y);
      const tip = page.locator('#sym-tooltip');
      await tip.waitFor({ state: 'visible', timeout: 5_000 });
      const [hoverTime, hoverPrice] = (await tip.getAttribute('data-cell')).split('|').map(Number);
      const hovered = sql(`SELECT row_to_json(f) FROM tapeflow.footprint(${q(SYMBOL)}, '5m', to_timestamp(${hoverTime}),
        to_timestamp(${hoverTime}) + interval '5 minutes') f WHERE f.price = ${hoverPrice}`, { json: true });
      assert.ok(hovered, `a cell of tapeflow.footprint at ${hoverPrice}`);
      assert.ok(Math.abs(hoverPrice - cell.price) <= 3 * tick, `the cell under the pointer: ${hoverPrice} for ${cell.price}`);
      assert.match(await tip.textContent(), new RegExp(`bid ${hovered.bid_volume.toLocaleString('en-US')} × ask ${
        hovered.ask_volume.toLocaleString('en-US')}`), 'hovering a cell shows its bid × ask');
      const range = await symbolState(page, () => window.tapeflow.symbol.fp && [window.tapeflow.symbol.fp.from,
        window.tapeflow.symbol.fp.to]);
      const expected = sql(`SELECT coalesce(json_agg(json_build_object('time', extract(epoch FROM i.time), 'price', i.price,
          'side', i.side, 'stacked', i.stacked) ORDER BY i.time, i.price, i.side), '[]')
        FROM tapeflow.footprint_imbalances(${q(SYMBOL)}, '5m', to_timestamp(${range[0]}), to_timestamp(${range[1]}),
          1.5, 0, 3) i`, { json: true });
      const marked = (await symbolState(page, () => window.tapeflow.symbol.footprintImbalances()))
        .sort((a, b) => a.time - b.time || a.price - b.price || a.side.localeCompare(b.side));
      assert.ok(expected.length > 0, 'the bars have imbalances');
      assert.deepEqual(marked, expected, 'the highlighted imbalances are footprint_imbalances\'');
      t.diagnostic(`${expected.length} imbalances (${expected.filter((i) => i.stacked).length} stacked) highlighted`);
      // Rows of 20 ticks read better in a picture (re-binned by the server), with a filter.
      await page.fill('#sym-tpr', '20');
      await page.fill('#sym-minvol', '2000');
      await page.press('#sym-tpr', 'Enter');
      await page.waitForFunction(() => window.tapeflow.symbol.fp?.ticksPerRow === 20, null, { timeout: 10_000 });
      await page.mouse.move(at.x, at.y);
      await page.waitForTimeout(600);
      await page.screenshot({ path: path.join(shots, 'symbol-footprint.png') });

      // Live: a trade at a new price moves the chart, over SSE, and its delta reaches the CVD pane.
      await page.click('#sym-mode button[data-mode="candles"]');
      const price = Number((Math.round(last.close / tick) * tick + 37 * tick).toFixed(8));
      sql(`INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
        VALUES (now(), ${q(SYMBOL)}, ${price}, 1234, 'B', 'pages-test-live-1')`);
      try {
        await page.waitForFunction((p) => Number(document.querySelector('#sym-chart').dataset.lastClose) === p, price,
          { timeout: LIVE_TIMEOUT });
      } catch {
        assert.fail(`the chart did not move to ${price} within ${LIVE_TIMEOUT / 1000} s`);
      }
      const live = flowLast();
      await page.waitForFunction((v) => Number(document.querySelector('#sym-delta').dataset.cvdLast) === v, live.cvd,
        { timeout: LIVE_TIMEOUT });
      assert.equal(await page.locator('#sym-last').textContent(), fmtAtTick(price, tick));
      t.diagnostic(`${SYMBOL} session ${day}: POC ${va.poc} VAH ${va.vah} VAL ${va.val}, ${levels} rows; `
        + `CVD ${flow.cvd} → ${live.cvd} after a live buy of 1234 at ${price}`);
      assert.deepEqual(problems, [], 'no page errors or failed requests');
    } finally {
      await page.screenshot({ path: path.join(shots, 'symbol-live.png') }).catch(() => {});
      await page.close();
    }
  });

test('strategies page: enable, extended hours, parameters validated per field, last error, backtest of the edit',
  { skip, timeout: 120_000 }, async (t) => {
    const { page, problems } = await openPage((url, status) => status === 400 && url.pathname.startsWith('/api/strategies/'));
    const config = () => sql(`SELECT row_to_json(c) FROM tapeflow.strategy_configs c
      WHERE c.symbol = ${q(SYMBOL)} AND c.strategy = 'amt'`, { json: true });
    try {
      await page.goto(`${baseUrl}/#/strategies`, { waitUntil: 'domcontentloaded' });
      await page.waitForSelector('#strategies-table tbody tr[data-key]', { timeout: 15_000 });
      assert.equal(await page.locator('#strategies-table tbody tr').count(),
        Number(sql('SELECT count(*) FROM tapeflow.symbols WHERE active')), 'one row per symbol');
      const row = page.locator(`#strategies-table tr[data-key="${SYMBOL}/amt"]`);
      await row.locator('td[data-field="strategy"]').click();
      await page.waitForFunction((s) => document.querySelector('#strategy-form').dataset.symbol === s, SYMBOL);
      const before = config();

      // Enable and extended hours, from the table, as the table stores them.
      const enabled = row.locator('button[data-toggle="enabled"]');
      assert.equal(await enabled.getAttribute('aria-checked'), String(before?.enabled ?? false));
      await enabled.click();
      await page.waitForFunction(([s, v]) => document.querySelector(`#strategies-table tr[data-key="${s}/amt"] `
        + 'button[data-toggle="enabled"]').getAttribute('aria-checked') === String(v), [SYMBOL, !(before?.enabled ?? false)]);
      assert.equal(config().enabled, !(before?.enabled ?? false));
      await row.locator('button[data-toggle="enabled"]').click();
      await page.waitForFunction(([s, v]) => document.querySelector(`#strategies-table tr[data-key="${s}/amt"] `
        + 'button[data-toggle="enabled"]').getAttribute('aria-checked') === String(v), [SYMBOL, before?.enabled ?? false]);
      assert.equal(config().enabled, before?.enabled ?? false);
      const extended = config().extended_hours;
      await row.locator('button[data-toggle="extended_hours"]').click();
      await page.waitForFunction(([s, v]) => document.querySelector(`#strategies-table tr[data-key="${s}/amt"] `
        + 'button[data-toggle="extended_hours"]').getAttribute('aria-checked') === String(v), [SYMBOL, !extended]);
      assert.equal(config().extended_hours, !extended);

      // A value out of range: validate_params' message, beside its field; nothing stored.
      const field = '#st-fields [name="strategy.min_aggression_score"]';
      const error = page.locator('#st-fields [data-error-for="strategy.min_aggression_score"]');
      await page.fill(field, '200');
      await page.click('#st-save');
      await error.waitFor({ state: 'visible', timeout: 10_000 });
      assert.equal(await error.textContent(),
        sqlError(`SELECT tapeflow.validate_params('{"strategy": {"min_aggression_score": 200}}')`));
      assert.equal(await page.locator(field).getAttribute('aria-invalid'), 'true');
      assert.deepEqual(config().params, before.params, 'a refused change stores nothing');
      // A wrong type, whose message does not name the key, still lands beside its field.
      const period = '#st-fields [name="atr_period"]';
      await page.fill(field, '');
      await page.fill(period, 'fast');
      await page.click('#st-save');
      const periodError = page.locator('#st-fields [data-error-for="atr_period"]');
      await periodError.waitFor({ state: 'visible', timeout: 10_000 });
      assert.match(await periodError.textContent(), /^atr_period: invalid strategy params: invalid type: string "fast"/);
      // A valid value is stored.
      await page.fill(period, before.params.atr_period == null ? '' : String(before.params.atr_period));
      await page.fill(field, '55');
      await page.click('#st-save');
      await page.waitForFunction(() => /^Saved/.test(document.querySelector('#st-message').textContent), null,
        { timeout: 10_000 });
      assert.equal(config().params.strategy.min_aggression_score, 55);
      assert.equal(await error.isHidden(), true);

      // The last evaluation error, as the scheduler records it.
      const other = sql(`SELECT symbol FROM tapeflow.symbols WHERE active AND symbol <> ${q(SYMBOL)} ORDER BY symbol LIMIT 1`);
      sql(`INSERT INTO tapeflow.strategy_configs (symbol, params) VALUES (${q(other)}, '{}') ON CONFLICT DO NOTHING;
        UPDATE tapeflow.strategy_configs SET last_error = 'engine: bad bar (test)', last_error_at = now()
        WHERE symbol = ${q(other)} AND strategy = 'amt'`);
      await page.click('nav a[data-route="feeds"]');
      await page.click('nav a[data-route="strategies"]');
      await page.waitForFunction((s) => /bad bar \(test\)/.test(document.querySelector(
        `#strategies-table tr[data-key="${s}/amt"] td[data-field="last_error"]`)?.textContent ?? ''), other,
      { timeout: 15_000 });

      // "Backtest these parameters": a run of the edited parameters, linked.
      await page.locator(`#strategies-table tr[data-key="${SYMBOL}/amt"] td[data-field="strategy"]`).click();
      await page.waitForFunction((s) => document.querySelector('#strategy-form').dataset.symbol === s, SYMBOL);
      await page.fill(field, '50');
      const day = sql(`SELECT tapeflow.session_date(max(bucket), 'America/New_York', '09:30') FROM tapeflow.bars_1m
        WHERE symbol = ${q(SYMBOL)}`);
      await page.fill('#st-bt-from', day);
      await page.fill('#st-bt-to', day);
      await page.click('#st-bt-run');
      const runLink = page.locator('#st-bt-link');
      await runLink.waitFor({ timeout: 15_000 });
      const id = Number((await runLink.getAttribute('href')).split('/').pop());
      const run = sql(`SELECT row_to_json(r) FROM (SELECT symbols, params FROM tapeflow.backtest_runs WHERE id = ${id}) r`,
        { json: true });
      assert.deepEqual(run.symbols, [SYMBOL]);
      assert.equal(run.params.engine.strategy.min_aggression_score, 50, 'the run has the edited parameters');
      assert.equal(config().params.strategy.min_aggression_score, 55, 'backtesting does not save them');
      await page.screenshot({ path: path.join(shots, 'strategies.png') });
      await runLink.click();
      await page.waitForURL(new RegExp(`#/backtests/${id}$`));
      await page.waitForFunction(() => ['completed', 'failed'].includes(document.querySelector('#run-status').dataset.status),
        null, { timeout: 60_000 });
      assert.equal(await page.locator('#run-status').getAttribute('data-status'), 'completed');
      t.diagnostic(`run #${id} of ${SYMBOL} started from the strategies page`);
      assert.deepEqual(problems, [], 'no page errors or failed requests');
    } finally {
      await page.close();
    }
  });

test('feeds page: each feeder connection with its health, a silent feeder flagged, refused records counted',
  { skip, timeout: 60_000 }, async () => {
    const { page, problems } = await openPage();
    try {
      sql('DELETE FROM tapeflow.feed_status; DELETE FROM tapeflow.feed_rejects');
      await page.goto(`${baseUrl}/#/feeds`, { waitUntil: 'domcontentloaded' });
      const empty = page.locator('#feeds-empty');
      await empty.waitFor({ state: 'visible', timeout: 15_000 });
      assert.match(await empty.textContent(), /^No feeder has reported yet/);
      assert.equal(await page.locator('#feeds-symbols tbody tr').count(),
        Number(sql('SELECT count(*) FROM tapeflow.symbols WHERE active')));
      // Two connections as a feeder writes them: one live, one whose feeder stopped
      // reporting a minute ago while it still said "connected"; and one refused record.
      sql(`INSERT INTO tapeflow.feed_status (provider, connection, state, symbols, last_message_at, lag_ms,
             messages_per_sec, messages, reconnects, parse_errors, last_error, last_error_at, updated_at)
           VALUES ('alpaca', 'stream', 'connected', 2, now() - interval '1 second', 12.5, 41.5, 12345, 1, 2,
                   'unreadable message: expected value at line 1', now(), now()),
                  ('ig', 'stream', 'connected', 1, now() - interval '70 seconds', NULL, 0, 10, 0, 0, NULL, NULL,
                   now() - interval '60 seconds');
           INSERT INTO tapeflow.feed_rejects (record, reason) VALUES ('Tick(..)', 'unknown symbol ZZZ')`);
      const row = (key, field) => page.locator(`#feeds-table tr[data-key="${key}"] td[data-field="${field}"]`);
      await row('alpaca/stream', 'state').waitFor({ state: 'visible', timeout: 15_000 });
      assert.equal(await row('alpaca/stream', 'state').textContent(), 'connected');
      assert.equal(await row('alpaca/stream', 'messages').textContent(), '12,345');
      assert.equal(await row('alpaca/stream', 'lag_ms').textContent(), '12.5 ms');
      assert.equal(await row('alpaca/stream', 'parse_errors').textContent(), '2');
      assert.match(await row('alpaca/stream', 'last_error').textContent(), /^unreadable message: expected value/);
      assert.match(await row('ig/stream', 'state').textContent(), /^no report for 1m/);
      assert.equal(await row('ig/stream', 'state').locator('.badge').getAttribute('class'), 'badge down');
      assert.match(await page.locator('#feeds-rejects').textContent(), /^1 record\(s\) refused.*unknown symbol ZZZ/);
      assert.ok(await empty.isHidden());
      await page.screenshot({ path: path.join(shots, 'feeds.png') });
      assert.deepEqual(problems, [], 'no page errors or failed requests');
    } finally {
      sql('DELETE FROM tapeflow.feed_status; DELETE FROM tapeflow.feed_rejects');
      await page.close();
    }
  });

test('backtest results: statistics in backtesting.py\'s order, prices to the tick, money to the cent',
  { skip, timeout: 120_000 }, async (t) => {
    const { page, problems } = await openPage();
    try {
      const day = sql(`SELECT tapeflow.session_date(max(bucket), 'America/New_York', '09:30') FROM tapeflow.bars_1m
        WHERE symbol = ${q(SYMBOL)}`);
      const { id } = await api('/api/backtests', { symbols: [SYMBOL], from: `${day}T14:30:00Z`, to: `${day}T21:00:00Z`,
        params: { slippage_bps: 1.3, engine: { strategy: { min_aggression_score: 40, allow_balance_trades: true } } } });
      await page.goto(`${baseUrl}/#/backtests/${id}`, { waitUntil: 'domcontentloaded' });
      await page.waitForFunction(() => document.querySelector('#run-status').dataset.status === 'completed', null,
        { timeout: 60_000 });
      await page.waitForSelector('#stats-table tbody tr', { timeout: 15_000 });
      const order = sql(`SELECT json_agg(statistic) FROM tapeflow.backtest_stats(${id})`, { json: true });
      const shown = await page.locator('#stats-table tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.key));
      assert.deepEqual(shown, order, 'the statistics in backtest_stats\' (backtesting.py\'s) order');
      const trades = sql(`SELECT coalesce(json_agg(json_build_object('entry_price', entry_price, 'mae', mae, 'pnl', pnl)
        ORDER BY n), '[]') FROM tapeflow.backtest_trades WHERE run_id = ${id}`, { json: true });
      await page.waitForFunction((n) => document.querySelectorAll('#trades-table tbody tr').length === n, trades.length,
        { timeout: 15_000 });
      if (trades.length) {
        const first = page.locator('#trades-table tbody tr').first();
        const tick = Number(sql(`SELECT tick_size FROM tapeflow.symbols WHERE symbol = ${q(SYMBOL)}`));
        assert.equal(await first.locator('[data-field="entry_price"]').textContent(), fmtAtTick(trades[0].entry_price, tick));
        assert.match(await first.locator('[data-field="mae"]').textContent(), /^-?[\d,]+\.\d\d$/, 'MAE to the cent');
        assert.match(await first.locator('[data-field="pnl"]').textContent(), /^[+-]?[\d,]+\.\d\d$/, 'P&L to the cent');
      }
      t.diagnostic(`run #${id}: ${shown.length} statistics, ${trades.length} trades`);
      await page.setViewportSize({ width: 1440, height: 1200 });
      await page.waitForTimeout(400);
      await page.screenshot({ path: path.join(shots, 'backtest-results.png') });
      assert.deepEqual(problems, [], 'no page errors or failed requests');
    } finally {
      await page.close();
    }
  });
