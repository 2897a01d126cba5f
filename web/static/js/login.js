// The login page: POST /login {name, password}; on success go to the page
// asked for (?next=/#/…, same origin only) or the dashboard. A lock-out
// (429) counts down its Retry-After before the button works again.
const $ = (sel) => document.querySelector(sel);
const form = $('#login-form');
const message = $('#login-message');
const submit = $('#login-submit');

function say(text, kind = 'error') {
  message.textContent = text;
  message.dataset.kind = kind;
}

/** Where to go after logging in: a local path only, never another site. */
function nextUrl() {
  const next = new URLSearchParams(location.search).get('next') || '/';
  return next.startsWith('/') && !next.startsWith('//') ? next : '/';
}

let countdown = null;
function lockOut(seconds, text) {
  clearInterval(countdown);
  let left = Math.max(1, Math.round(seconds));
  submit.disabled = true;
  say(text, 'locked');
  form.dataset.retryAfter = String(left);
  countdown = setInterval(() => {
    left -= 1;
    form.dataset.retryAfter = String(left);
    if (left > 0) say(`${text} (${left} s left)`, 'locked');
    if (left <= 0) {
      clearInterval(countdown);
      submit.disabled = false;
      delete form.dataset.retryAfter;
      say('You may try again now.', 'info');
    }
  }, 1000);
}

form.addEventListener('submit', async (e) => {
  e.preventDefault();
  const name = $('#login-name').value.trim();
  const password = $('#login-password').value;
  if (!name || !password) {
    say('Give your user name and password.');
    return;
  }
  submit.disabled = true;
  say('Logging in…', 'info');
  let res;
  try {
    res = await fetch('/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ name, password }),
      credentials: 'same-origin',
    });
  } catch (err) {
    submit.disabled = false;
    say(`The server could not be reached: ${err.message}`);
    return;
  }
  const body = await res.json().catch(() => ({}));
  if (res.ok) {
    say('Logged in.', 'info');
    form.dataset.state = 'ok';
    location.replace(nextUrl());
    return;
  }
  $('#login-password').value = '';
  if (res.status === 429) {
    const wait = Number(res.headers.get('retry-after')) || body.retry_after || 60;
    lockOut(wait, body.error || `Too many failed logins: try again in ${wait} s.`);
    return;
  }
  submit.disabled = false;
  say(body.error || `Login failed (HTTP ${res.status}).`);
  $('#login-password').focus();
});
