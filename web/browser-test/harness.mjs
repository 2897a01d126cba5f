// What the browser tests share: the headless Chromium they drive, and psql against the
// database of the server under test.
import { execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';

/** Debian's chromium (or CHROMIUM_PATH), headless, its background traffic off. */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

/** The output of `query` run by psql against `dbUrl` (unaligned, tuples only, trimmed);
 *  throws at the first error, with psql's message in `err.stderr`. */
export function psql(dbUrl, query) {
  return execFileSync('psql', [dbUrl, '-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', query],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}
