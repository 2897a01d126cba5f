// Who is logged in, in the top bar, with a "Log out" button. Viewers are read
// only: the controls that change something say so (the server refuses them
// with 403 anyway).
import { fetchSession, logout, toLogin } from './api.js';

const CONTROLS = ['#kill-switch', '#flatten-all', '#backtest-run'];

export async function showSession() {
  const box = document.querySelector('#user');
  let me;
  try {
    me = await fetchSession();
  } catch {
    return; // a 401 is already on its way to the login page
  }
  document.body.dataset.role = me.role;
  if (box) {
    box.querySelector('#user-name').textContent = me.name;
    box.querySelector('#user-role').textContent = me.role;
    box.hidden = false;
  }
  const users = document.querySelector('#users-link');
  if (users) users.hidden = me.role !== 'admin';
  if (me.role === 'viewer') {
    for (const sel of CONTROLS) {
      const el = document.querySelector(sel);
      if (el) el.title = `Read only: ${me.name} is a viewer (a trader or admin may do this)`;
    }
  }
  document.querySelector('#logout')?.addEventListener('click', async () => {
    await logout();
    toLogin();
  });
}
