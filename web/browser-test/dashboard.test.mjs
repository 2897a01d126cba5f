// Headless-browser test of the dashboard against a running tapeflow-web (or
// the mock server): the page loads, shows symbols and a chart (with the
// executor's fills as markers), and receives live updates over SSE; a
// backtest started from the page runs to completion and its results are
// shown; the account page shows what the server has, and its kill switch and
// "flatten all" work.
//
//   TAPEFLOW_WEB_URL=http://127.0.0.1:8080 node --test web/browser-test/
// Env: TAPEFLOW_WEB_URL (default http://127.0.0.1:8080), TAPEFLOW_WEB_USER and
// TAPEFLOW_WEB_PASSWORD (logged in through the login page), TAPEFLOW_SCREENSHOT
// (default ../target/dashboard.png from web/; the other pages' pictures go
// beside it), CHROMIUM_PATH (default /usr/bin/chromium; browsers are never
// downloaded).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './harness.mjs';
import { fmtPriceText, fmtQty } from '../static/js/account-data.js';
import { loggedInContext, sessionApi } from './login.mjs';

const webDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const baseUrl = process.env.TAPEFLOW_WEB_URL || 'http://127.0.0.1:8080';
const screenshot = path.resolve(process.env.TAPEFLOW_SCREENSHOT || path.join(webDir, '..', 'target', 'dashboard.png'));
const LIVE_TIMEOUT = 20_000;
// A backtest of a few days runs in seconds against the real server too.
const RUN_TIMEOUT = 60_000;

let browser;
let context;
let api;
before(async () => {
  browser = await launchChromium();
  // One session for every page, from the login page.
  context = await loggedInContext(browser, baseUrl, { viewport: { width: 1440, height: 860 } });
  api = await sessionApi(context, baseUrl);
});
after(() => browser?.close());

/** GET a JSON API path of the server under test, or POST `body` to it, in the session. */
const apiJSON = (pathname, body) => api(pathname, body);

/** A page that records uncaught errors and failed requests, which fail the test. */
async function openPage() {
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('requestfailed', (req) => {
    // The SSE request is aborted when the page closes; that is not a fault.
    if (!req.url().endsWith('/events')) problems.push(`request failed: ${req.url()} ${req.failure()?.errorText}`);
  });
  page.on('response', (res) => {
    // The page may ask for /api/signals without a symbol and, if refused,
    // falls back to asking per symbol; any other error response is a fault.
    const url = new URL(res.url());
    const fallback = url.pathname === '/api/signals' && !url.searchParams.has('symbol');
    if (res.status() >= 400 && !fallback) problems.push(`HTTP ${res.status()}: ${res.url()}`);
  });
  return { page, problems };
}

test('dashboard shows the watchlist and chart and receives live updates', { timeout: 60_000 }, async (t) => {
  const { page, problems } = await openPage();
  try {
    const res = await page.goto(baseUrl, { waitUntil: 'domcontentloaded' });
    assert.ok(res?.ok(), `GET ${baseUrl} answered ${res?.status()}`);

    await page.waitForSelector('#watchlist tbody tr[data-symbol]', { timeout: 15_000 });
    const rows = await page.locator('#watchlist tbody tr[data-symbol]').count();
    assert.ok(rows > 0, 'the watchlist has rows');
    await page.waitForSelector('#chart canvas', { timeout: 15_000 });

    try {
      await page.waitForFunction(() => Number(document.querySelector('#live-count')?.textContent) > 0, null,
        { timeout: LIVE_TIMEOUT });
    } catch {
      const status = await page.locator('#status').textContent();
      assert.fail(`no live update over /events within ${LIVE_TIMEOUT / 1000} s (stream status: ${status})`);
    }
    assert.equal(await page.locator('#status').getAttribute('data-state'), 'connected');

    const selected = page.locator('#watchlist tr.selected');
    assert.equal(await selected.count(), 1, 'one symbol is selected');
    const symbol = await selected.getAttribute('data-symbol');
    const lastText = await selected.locator('[data-field="last"]').textContent();
    const last = Number(lastText.replace(/,/g, ''));
    assert.ok(Number.isFinite(last), `last price of ${symbol} is a number, got "${lastText}"`);
    assert.equal(await page.locator('#chart-symbol').textContent(), symbol, 'the chart shows the selected symbol');

    // Let the chart finish drawing before the picture.
    await page.waitForFunction(() => document.querySelector('#chart-message')?.hidden !== false
      || !/Loading/.test(document.querySelector('#chart-message').textContent), null, { timeout: 10_000 });
    const bars = await page.locator('#chart').getAttribute('data-bars');
    // The executor's fills of the symbol, if any, are drawn as markers.
    const fills = await apiJSON(`/api/fills?symbol=${encodeURIComponent(symbol)}&limit=500`);
    const dayAgo = Date.now() - 86400e3;
    if (fills.some((f) => Date.parse(f.time) > dayAgo)) {
      await page.waitForFunction(() => Number(document.querySelector('#chart').dataset.fillMarkers) > 0, null,
        { timeout: 10_000 });
    }
    const markers = await page.locator('#chart').getAttribute('data-fill-markers');
    t.diagnostic(`${rows} symbols; ${symbol} last ${last}; ${bars} bars drawn; ${markers} of ${fills.length} fills marked`);
    assert.deepEqual(problems, [], 'no page errors or failed requests');
  } finally {
    await mkdir(path.dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot }).catch(() => {});
    await page.close();
  }
});

test('signals page lists signals and switches back to the dashboard', { timeout: 30_000 }, async () => {
  const { page, problems } = await openPage();
  try {
    await page.goto(`${baseUrl}/#/signals`, { waitUntil: 'domcontentloaded' });
    await page.waitForSelector('#signals-table', { state: 'visible', timeout: 15_000 });
    assert.ok(await page.locator('#chart').isHidden(), 'the dashboard is hidden on the signals page');
    // Rows are optional (a fresh database has none), the empty note then shows.
    await page.waitForFunction(() => document.querySelector('#signals-table tbody tr')
      || !document.querySelector('#signals-empty').hidden, null, { timeout: 15_000 });
    await page.click('nav a[data-route="dashboard"]');
    await page.waitForSelector('#chart canvas', { state: 'visible', timeout: 15_000 });
    assert.deepEqual(problems, [], 'no page errors or failed requests');
  } finally {
    const signalsShot = screenshot.replace(/(\.png)?$/, '-signals.png');
    await page.goto(`${baseUrl}/#/signals`).catch(() => {});
    await page.waitForTimeout(500);
    await page.screenshot({ path: signalsShot }).catch(() => {});
    await page.close();
  }
});

test('backtests page starts a run, follows it live and shows its results', { timeout: RUN_TIMEOUT + 60_000 },
  async (t) => {
    const { page, problems } = await openPage();
    try {
      await page.goto(`${baseUrl}/#/backtests`, { waitUntil: 'domcontentloaded' });
      await page.waitForSelector('#backtests-form input[name="symbols"]', { timeout: 15_000 });
      assert.ok(await page.locator('#chart').isHidden(), 'the dashboard is hidden on the backtests page');

      // The first symbol alone, with the default dates and params.
      const symbol = await page.locator('#backtests-form input[name="symbols"]').evaluateAll((boxes) => {
        boxes.forEach((box, i) => { box.checked = i === 0; });
        return boxes[0].value;
      });
      await page.click('#backtest-run');
      await page.waitForFunction(() => document.querySelector('#backtests-form').dataset.runId
        || document.querySelector('#backtest-message.error'), null, { timeout: 15_000 });
      const id = await page.locator('#backtests-form').getAttribute('data-run-id');
      assert.ok(id, `the run was not started: ${await page.locator('#backtest-message').textContent()}`);

      // Progress arrives over /events; the row follows it to the end.
      const row = page.locator(`#backtests-table tr[data-run-id="${id}"]`);
      try {
        await page.waitForFunction((sel) => ['completed', 'failed', 'cancelled']
          .includes(document.querySelector(sel)?.dataset.status), `#backtests-table tr[data-run-id="${id}"]`,
        { timeout: RUN_TIMEOUT });
      } catch {
        const status = await row.locator('[data-field="status"]').textContent().catch(() => 'no row');
        assert.fail(`run ${id} did not finish within ${RUN_TIMEOUT / 1000} s (status: ${status})`);
      }
      const status = await row.getAttribute('data-status');
      if (status !== 'completed') {
        assert.fail(`run ${id} ${status}: ${await row.locator('.error').textContent().catch(() => 'no error given')}`);
      }

      await row.click();
      await page.waitForURL(new RegExp(`#/backtests/${id}$`));
      await page.waitForSelector('#equity-chart canvas', { state: 'visible', timeout: 15_000 });
      await page.waitForSelector('#stats-table tbody tr', { timeout: 15_000 });
      assert.equal((await page.locator('#run-status').textContent()).trim(), 'completed');
      assert.ok(await page.locator('#drawdown-chart canvas').count() > 0, 'the drawdown chart is drawn');
      const stats = await page.locator('#stats-table tbody tr').count();
      await page.waitForFunction(() => document.querySelector('#equity-chart').dataset.points !== undefined, null,
        { timeout: 15_000 });
      const points = await page.locator('#equity-chart').getAttribute('data-points');
      const trades = await page.locator('#trades-table tbody tr').count();
      t.diagnostic(`run ${id} of ${symbol}: ${points} equity points, ${trades} trades, ${stats} statistics`);
      assert.deepEqual(problems, [], 'no page errors or failed requests');
    } finally {
      // Tall enough for the trades table under the charts.
      await page.setViewportSize({ width: 1440, height: 1300 }).catch(() => {});
      await page.waitForTimeout(300);
      await page.screenshot({ path: path.join(path.dirname(screenshot), 'backtest.png') }).catch(() => {});
      await page.close();
    }
  });

test('account page shows positions, orders and fills; kill switch and flatten all work', { timeout: 60_000 },
  async (t) => {
    const { page, problems } = await openPage();
    const dialogs = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      d.accept();
    });
    try {
      // What the server has, to compare with what the page shows.
      const [account, positions, fills, orders] = await Promise.all([apiJSON('/api/account'),
        apiJSON('/api/positions'), apiJSON('/api/fills?limit=100'), apiJSON('/api/orders?status=open&limit=200')]);
      await page.goto(`${baseUrl}/#/account`, { waitUntil: 'domcontentloaded' });
      await page.waitForSelector('#positions-table', { state: 'visible', timeout: 15_000 });
      assert.ok(await page.locator('#chart').isHidden(), 'the dashboard is hidden on the account page');
      await page.waitForFunction(() => document.querySelector('#account-message').dataset.state !== 'loading'
        && document.querySelector('#kill-switch').dataset.enabled, null, { timeout: 15_000 });

      const message = page.locator('#account-message');
      if (!account.orders && !account.fills) {
        assert.match(await message.textContent(), /No orders yet — the executor has not traded/);
        assert.ok(await page.locator('#positions-empty').isVisible(), 'no positions: the empty note shows');
        assert.ok(await page.locator('#fills-empty').isVisible(), 'no fills: the empty note shows');
      } else {
        assert.ok(await message.isHidden() || !/No orders yet/.test(await message.textContent()));
        assert.equal(await page.locator('#positions-table tbody tr').count(), positions.length);
        for (const p of positions) {
          const tr = page.locator(`#positions-table tr[data-symbol="${p.symbol}"][data-strategy="${p.strategy}"]`);
          assert.equal(await tr.locator('[data-field="quantity"]').textContent(), fmtQty(p.quantity));
          assert.equal(await tr.locator('[data-field="avg_price"]').textContent(), fmtPriceText(p.avg_price));
          const pnl = await tr.locator('[data-field="unrealised_pnl"]').textContent();
          assert.match(pnl, /^[+-]?[\d,]+\.\d\d$|^0\.00$/, `unrealised P&L of ${p.symbol}: ${pnl}`);
        }
        assert.equal(await page.locator('#fills-table tbody tr').count(), fills.length);
        if (fills.length) {
          const first = page.locator('#fills-table tbody tr').first();
          assert.equal(await first.getAttribute('data-id'), String(fills[0].id));
          assert.equal(await first.locator('[data-field="price"]').textContent(), fmtPriceText(fills[0].price));
          assert.equal(await first.locator('[data-field="qty"]').textContent(), fmtQty(fills[0].qty));
        }
        const legs = orders.reduce((n, o) => n + (o.legs?.length ?? 0), 0);
        assert.equal(await page.locator('#orders-table tbody tr').count(), orders.length + legs);
        assert.equal(await page.locator('#orders-table tbody tr.leg').count(), legs);
        assert.notEqual(await page.locator('#tile-equity').textContent(), '—', 'the equity tile shows the snapshot');
      }
      if (positions.length) {
        // Candles of held symbols bring new marks.
        await page.waitForRequest((r) => new URL(r.url()).pathname === '/api/positions', { timeout: 15_000 });
      }

      // The kill switch, from the page; and back from elsewhere, which the page learns over /events.
      const toggle = page.locator('#kill-switch');
      const was = (await toggle.getAttribute('data-enabled')) === 'true';
      assert.equal(was, account.trading_enabled);
      await toggle.click();
      await page.waitForFunction((v) => document.querySelector('#kill-switch').dataset.enabled === String(v), !was,
        { timeout: 10_000 });
      assert.equal(await toggle.getAttribute('aria-checked'), String(!was));
      assert.equal((await apiJSON('/api/account')).trading_enabled, !was, 'the server has the new setting');
      await apiJSON('/api/kill-switch', { enabled: was });
      try {
        await page.waitForFunction((v) => document.querySelector('#kill-switch').dataset.enabled === String(v), was,
          { timeout: LIVE_TIMEOUT });
      } catch {
        assert.fail('the page did not follow a kill-switch change made elsewhere (no risk event over /events?)');
      }

      // Flatten all asks first, then writes one exit signal per open position.
      await page.click('#flatten-all');
      await page.waitForFunction(() => document.querySelector('#account-message').dataset.flattened !== undefined,
        null, { timeout: 10_000 });
      assert.equal(dialogs.length, 1, 'flatten all asks for confirmation');
      assert.match(dialogs[0], /Flatten all/);
      const flattened = Number(await message.getAttribute('data-flattened'));
      t.diagnostic(`${positions.length} positions, ${fills.length} fills, ${orders.length} open orders; ${flattened} flattened`);
      assert.equal(flattened, positions.length);
      assert.deepEqual(problems, [], 'no page errors or failed requests');
    } finally {
      await page.setViewportSize({ width: 1440, height: 1000 }).catch(() => {});
      await page.goto(`${baseUrl}/#/account`).catch(() => {});
      await page.waitForTimeout(600);
      await page.screenshot({ path: path.join(path.dirname(screenshot), 'account.png') }).catch(() => {});
      await page.close();
    }
  });
