// Headless-browser test of logging in to a real tapeflow-web (not the mock,
// which needs no login; hence not a *.test.mjs file): the dashboard sends to
// the login page; a wrong password is refused; repeated failures lock a user
// out with a countdown; a login lands on the dashboard showing who is logged
// in; a mutation without the CSRF token is refused; a viewer is refused a
// mutation with 403; logging out ends the session; an admin adds a user on
// the users page.
//
// Env: TAPEFLOW_WEB_URL; TAPEFLOW_WEB_USER / TAPEFLOW_WEB_PASSWORD (a trader);
// TAPEFLOW_VIEWER_USER / TAPEFLOW_VIEWER_PASSWORD; TAPEFLOW_LOCKED_USER (a user
// this test locks out); TAPEFLOW_MAX_FAILURES (the server's
// TAPEFLOW_WEB_LOGIN_MAX_FAILURES); TAPEFLOW_ADMIN_USER / TAPEFLOW_ADMIN_PASSWORD;
// TAPEFLOW_SCREENSHOT (the login page's
// picture, default ../target/login.png); CHROMIUM_PATH.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './harness.mjs';
import { loginOnPage } from './login.mjs';

const webDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const baseUrl = process.env.TAPEFLOW_WEB_URL || 'http://127.0.0.1:8080';
const screenshot = path.resolve(process.env.TAPEFLOW_SCREENSHOT || path.join(webDir, '..', 'target', 'login.png'));
const trader = { name: process.env.TAPEFLOW_WEB_USER, password: process.env.TAPEFLOW_WEB_PASSWORD };
const viewer = { name: process.env.TAPEFLOW_VIEWER_USER, password: process.env.TAPEFLOW_VIEWER_PASSWORD };
const locked = process.env.TAPEFLOW_LOCKED_USER;
const maxFailures = Number(process.env.TAPEFLOW_MAX_FAILURES || 5);

let browser;
before(async () => {
  browser = await launchChromium();
});
after(() => browser?.close());

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err.message));
  return { context, page, errors };
}

/** Submits the form and waits for the page's answer in #login-message. */
async function submit(page, name, password) {
  await page.fill('#login-name', name);
  await page.fill('#login-password', password);
  const answer = page.waitForResponse((r) => new URL(r.url()).pathname === '/login' && r.request().method() === 'POST');
  await page.click('#login-submit');
  const res = await answer;
  await page.waitForFunction(() => !/Logging in/.test(document.querySelector('#login-message').textContent));
  return { status: res.status(), message: await page.locator('#login-message').textContent() };
}

test('wrong password, lock-out, login, CSRF refusal and logout', { timeout: 90_000 }, async (t) => {
  const { context, page, errors } = await newPage();
  try {
    // The dashboard without a session sends to the login page.
    await page.goto(baseUrl, { waitUntil: 'domcontentloaded' });
    assert.equal(new URL(page.url()).pathname, '/login');

    const wrong = await submit(page, trader.name, 'not-the-password');
    assert.equal(wrong.status, 401);
    assert.match(wrong.message, /Wrong user name or password/);
    assert.equal(await page.locator('#login-password').inputValue(), '', 'the password field is cleared');

    // Repeated failures lock the user out: a clear message and a countdown.
    for (let i = 0; i < maxFailures; i += 1) await submit(page, locked, `guess-${i}`);
    const refused = await submit(page, locked, `guess-${maxFailures}`);
    assert.equal(refused.status, 429);
    assert.match(refused.message, new RegExp(`Too many failed logins for ${locked}: locked out, try again in \\d`));
    assert.ok(await page.locator('#login-submit').isDisabled(), 'the button waits for the lock-out');
    const retry = Number(await page.locator('#login-form').getAttribute('data-retry-after'));
    assert.ok(retry > 0 && retry <= 120, `retry after ${retry} s`);
    await page.screenshot({ path: screenshot }).catch(() => {});
    t.diagnostic(`locked out for ${retry} s: ${refused.message}`);

    // A fresh page (the countdown is per page) logs the trader in.
    await page.goto(`${baseUrl}/login?next=${encodeURIComponent('/#/account')}`, { waitUntil: 'domcontentloaded' });
    await loginOnPage(page, trader);
    assert.equal(new URL(page.url()).hash, '#/account', 'back to the page asked for');
    await page.waitForSelector('#user:not([hidden])', { timeout: 15_000 });
    assert.equal(await page.locator('#user-name').textContent(), trader.name);
    assert.equal(await page.locator('#user-role').textContent(), 'trader');
    const cookies = await context.cookies(baseUrl);
    const session = cookies.find((c) => c.name === 'tapeflow_session');
    assert.ok(session?.httpOnly, 'the session cookie is HttpOnly');
    assert.equal(session.sameSite, 'Strict');
    assert.equal(await page.evaluate(() => document.cookie.includes('tapeflow_session')), false,
      'scripts cannot read the session cookie');

    // A mutation without the CSRF token is refused; the page's own API module sends it.
    const bare = await page.evaluate(async () => {
      const r = await fetch('/api/kill-switch', { method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ enabled: true }) });
      return { status: r.status, body: await r.json() };
    });
    assert.equal(bare.status, 403);
    assert.match(bare.body.error, /CSRF/);
    const viaApi = await page.evaluate(() => import('/static/js/api.js').then((m) => m.setTrading(true)));
    assert.equal(viaApi.trading_enabled, true);

    // Log out: back to the login page, and the session is gone.
    await page.click('#logout');
    await page.waitForURL((u) => new URL(u).pathname === '/login', { timeout: 10_000 });
    const after = await page.evaluate(() => fetch('/api/session').then((r) => r.status));
    assert.equal(after, 401);
    assert.deepEqual(errors, [], 'no page errors');
  } finally {
    await context.close();
  }
});

test('a viewer reads the dashboard and is refused a mutation with 403', { timeout: 60_000 }, async () => {
  const { context, page, errors } = await newPage();
  try {
    await page.goto(`${baseUrl}/login`, { waitUntil: 'domcontentloaded' });
    await loginOnPage(page, viewer);
    await page.waitForSelector('#user:not([hidden])', { timeout: 15_000 });
    assert.equal(await page.locator('#user-role').textContent(), 'viewer');
    await page.waitForFunction(() => document.body.dataset.role === 'viewer');
    // Reading works: the watchlist loads (empty database: no rows, no error).
    const symbols = await page.evaluate(() => fetch('/api/symbols').then((r) => r.status));
    assert.equal(symbols, 200);
    // The kill switch, as the page would send it, is refused with the reason.
    const refusal = await page.evaluate(() => import('/static/js/api.js')
      .then((m) => m.setTrading(false)).then(() => 'accepted', (e) => e.message));
    assert.match(refusal, /forbidden: .* is a viewer; this needs the trader role/);
    const status = await page.evaluate(async () => {
      const { csrf } = await fetch('/api/session').then((r) => r.json());
      const r = await fetch('/api/flatten', { method: 'POST', headers: { 'x-csrf-token': csrf } });
      return r.status;
    });
    assert.equal(status, 403);
    const title = await page.locator('#kill-switch').getAttribute('title');
    assert.match(title, /Read only/);
    assert.deepEqual(errors, [], 'no page errors');
  } finally {
    await context.close();
  }
});

test('an admin adds a user on the users page and that user can log in', { timeout: 60_000 }, async () => {
  const admin = { name: process.env.TAPEFLOW_ADMIN_USER, password: process.env.TAPEFLOW_ADMIN_PASSWORD };
  const { context, page, errors } = await newPage();
  try {
    await page.goto(`${baseUrl}/login`, { waitUntil: 'domcontentloaded' });
    await loginOnPage(page, admin);
    await page.waitForSelector('#users-link:not([hidden])', { timeout: 15_000 });
    await page.click('#users-link');
    await page.waitForSelector('#users-table tbody tr[data-name]', { timeout: 15_000 });
    await page.fill('#new-name', 'newbie');
    await page.selectOption('#new-role', 'trader');
    await page.click('#user-form button[type="submit"]');
    await page.waitForSelector('#users-table tr[data-name="newbie"]', { timeout: 10_000 });
    const text = await page.locator('#users-message').textContent();
    const password = text.match(/password (\S+) \(shown once\)/)?.[1];
    assert.ok(password, `the generated password is shown: ${text}`);
    // The new user logs in elsewhere with it.
    const other = await newPage();
    try {
      await other.page.goto(`${baseUrl}/login`, { waitUntil: 'domcontentloaded' });
      await loginOnPage(other.page, { name: 'newbie', password });
      await other.page.waitForSelector('#user:not([hidden])', { timeout: 15_000 });
      assert.equal(await other.page.locator('#user-role').textContent(), 'trader');
      assert.ok(await other.page.locator('#users-link').isHidden(), 'no users link for a trader');
    } finally {
      await other.context.close();
    }
    assert.deepEqual(errors, [], 'no page errors');
  } finally {
    await context.close();
  }
});
