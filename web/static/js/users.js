// The admin's users page: list, add (a generated password is shown once),
// change a role, disable or enable, reset a password, remove. Everything
// goes through /api/users, which only admins may use.
import { sendJSON, toLogin } from './api.js';
import { showSession } from './session.js';

const $ = (sel) => document.querySelector(sel);
const ROLES = ['viewer', 'trader', 'admin'];

function say(text, kind = 'info') {
  const el = $('#users-message');
  el.textContent = text;
  el.dataset.kind = kind;
}

function cell(row, content) {
  const td = row.insertCell();
  if (content instanceof Node) td.append(content);
  else td.textContent = content ?? '—';
  return td;
}

const when = (t) => (t ? new Date(t).toLocaleString() : '—');

async function change(name, body, done) {
  try {
    const r = await sendJSON('POST', `/api/users/${encodeURIComponent(name)}`, body);
    say(r.password ? `New password of ${name}: ${r.password} (shown once)` : done);
  } catch (err) {
    say(err.message, 'error');
  }
  load();
}

async function load() {
  const res = await fetch('/api/users', { headers: { accept: 'application/json' } });
  if (res.status === 401) return toLogin();
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    say(body.error || `HTTP ${res.status}`, 'error');
    return undefined;
  }
  const tbody = $('#users-table tbody');
  tbody.replaceChildren();
  for (const u of body) {
    const tr = tbody.insertRow();
    tr.dataset.name = u.name;
    cell(tr, u.name);
    const role = document.createElement('select');
    for (const r of ROLES) role.add(new Option(r, r, false, r === u.role));
    role.addEventListener('change', () => change(u.name, { role: role.value }, `${u.name} is now a ${role.value}.`));
    cell(tr, role);
    const enabled = document.createElement('input');
    enabled.type = 'checkbox';
    enabled.checked = !u.disabled;
    enabled.addEventListener('change', () => change(u.name, { disabled: !enabled.checked },
      enabled.checked ? `${u.name} is enabled.` : `${u.name} is disabled; their sessions were ended.`));
    cell(tr, enabled);
    cell(tr, String(u.sessions)).className = 'num';
    cell(tr, when(u.last_seen));
    cell(tr, when(u.created_at));
    const actions = document.createElement('span');
    const reset = document.createElement('button');
    reset.type = 'button';
    reset.className = 'chip';
    reset.textContent = 'Reset password';
    reset.addEventListener('click', () => change(u.name, { reset_password: true }, ''));
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'chip';
    remove.textContent = 'Remove';
    remove.addEventListener('click', async () => {
      if (!window.confirm(`Remove user ${u.name}?`)) return;
      try {
        await sendJSON('DELETE', `/api/users/${encodeURIComponent(u.name)}`);
        say(`Removed ${u.name}.`);
      } catch (err) {
        say(err.message, 'error');
      }
      load();
    });
    actions.append(reset, remove);
    cell(tr, actions);
  }
  $('#users-count').textContent = String(body.length);
  return undefined;
}

$('#user-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const name = $('#new-name').value.trim();
  const password = $('#new-password').value;
  try {
    const r = await sendJSON('POST', '/api/users', { name, role: $('#new-role').value,
      ...(password ? { password } : {}) });
    say(r.password ? `Added ${r.name} (${r.role}); password ${r.password} (shown once)` : `Added ${r.name} (${r.role}).`);
    $('#user-form').reset();
  } catch (err) {
    say(err.message, 'error');
  }
  load();
});

showSession();
load();
