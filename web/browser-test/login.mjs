// Logging in for the browser tests: a browser context whose session cookie
// comes from the real login page (with TAPEFLOW_WEB_USER and
// TAPEFLOW_WEB_PASSWORD), and API calls from the test itself in that session
// (the context's cookies plus the session's CSRF token). Against the mock
// server, which needs no login, the page is simply not asked for.

/** The user the tests log in as. */
export const credentials = () => ({
  name: process.env.TAPEFLOW_WEB_USER || 'tester',
  password: process.env.TAPEFLOW_WEB_PASSWORD || '',
});

/** Fills the login form of `page` (already on /login) and waits to leave it. */
export async function loginOnPage(page, { name, password } = credentials(), { timeout = 15_000 } = {}) {
  await page.fill('#login-name', name);
  await page.fill('#login-password', password);
  await Promise.all([
    page.waitForURL((u) => new URL(u).pathname !== '/login', { timeout }),
    page.click('#login-submit'),
  ]);
}

/** A new browser context logged in to `baseUrl` (through the page, as a person would). */
export async function loggedInContext(browser, baseUrl, options = {}, who = credentials()) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  try {
    await page.goto(new URL('/', baseUrl).href, { waitUntil: 'domcontentloaded' });
    if (new URL(page.url()).pathname === '/login') await loginOnPage(page, who);
  } finally {
    await page.close();
  }
  return context;
}

/** `api(pathname[, body])`: GET, or POST `body` as JSON, in the context's session;
 *  resolves to the parsed JSON and throws unless the answer is 2xx. */
export async function sessionApi(context, baseUrl) {
  const session = await context.request.get(new URL('/api/session', baseUrl).href);
  const csrf = session.ok() ? (await session.json()).csrf : '';
  return async (pathname, body) => {
    const url = new URL(pathname, baseUrl).href;
    const res = body === undefined
      ? await context.request.get(url)
      : await context.request.post(url, { data: body, headers: { 'x-csrf-token': csrf } });
    if (!res.ok()) throw new Error(`${pathname} answered ${res.status()}: ${await res.text()}`);
    return res.json();
  };
}
