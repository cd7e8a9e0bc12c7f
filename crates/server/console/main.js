// The console: sign-in, then Settings › AI with its views, one per route
// (#/wallet, #/buy, #/byok, #/activity, #/usage, #/try).

import { h, fill } from './dom.js';
import { gql, errorBox } from './api.js';
import * as session from './session.js';
import { Realtime } from './realtime.js';
import { store, setWallet, addEntry, WALLET_FIELDS, ENTRY_FIELDS } from './store.js';
import { signInView } from './views/signin.js';
import { walletView } from './views/wallet.js';
import { buyView } from './views/buy.js';
import { byokView } from './views/byok.js';
import { activityView } from './views/activity.js';
import { usageView } from './views/usage.js';
import { tryView } from './views/try.js';

const VIEWS = [
  { route: 'wallet', title: 'Wallet', render: walletView },
  { route: 'buy', title: 'Buy Credits', render: buyView },
  { route: 'byok', title: 'BYOK', render: byokView },
  { route: 'activity', title: 'Activity', render: activityView },
  { route: 'usage', title: 'Usage', render: usageView, admin: true },
  { route: 'try', title: 'Try AI', render: tryView },
];

const main = document.getElementById('main');
const who = document.getElementById('who');
const live = document.getElementById('live');
const signOut = document.getElementById('sign-out');
let cleanup = null;
let nav = null;

const LIVE_WORDS = { connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…', offline: 'Offline' };

function isAdmin() {
  return store.me && (store.me.role === 'ADMIN' || store.me.role === 'SERVICE');
}

/** The route of the address: "#/buy?purchase=..." -> {name: "buy", params}. */
function route() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [name, query] = raw.split('?');
  return { name: name || 'wallet', params: new URLSearchParams(query || '') };
}

function teardown() {
  if (cleanup) cleanup();
  cleanup = null;
}

function showSignIn(message) {
  teardown();
  if (store.realtime) store.realtime.close();
  store.realtime = null;
  store.me = null;
  store.wallet = null;
  fill(who);
  fill(live);
  signOut.hidden = true;
  nav = null;
  document.getElementById('shell').replaceChildren(main);
  fill(main, signInView(message));
}

function renderNav() {
  const links = VIEWS.filter((v) => !v.admin || isAdmin()).map((v) =>
    h('li', {}, h('a', { href: `#/${v.route}`, 'data-route': v.route }, v.title)),
  );
  nav = h('nav', { class: 'tabs', 'aria-label': 'Settings › AI' }, h('ul', {}, links));
  const shell = document.getElementById('shell');
  shell.replaceChildren(
    h('div', { class: 'crumbs' }, h('span', {}, 'Settings'), ' › ', h('strong', {}, 'AI')),
    nav,
    main,
  );
}

function showRoute() {
  if (!store.me) return;
  const { name, params } = route();
  const view = VIEWS.find((v) => v.route === name) || VIEWS[0];
  for (const a of nav.querySelectorAll('a')) {
    if (a.dataset.route === view.route) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  teardown();
  document.title = `${view.title} · Settings › AI · creditgate`;
  const section = h('section', { class: 'view', 'aria-labelledby': 'view-title', 'data-view': view.route });
  section.append(h('h1', { id: 'view-title' }, view.title));
  fill(main, section);
  if (view.admin && !isAdmin()) {
    section.append(h('p', { class: 'empty' }, 'Only administrators of your organization can see its usage.'));
    return;
  }
  cleanup = view.render(section, params) || null;
}

async function start() {
  const token = session.current();
  if (!token) {
    showSignIn();
    return;
  }
  fill(main, h('p', { class: 'loading' }, 'Loading…'));
  let data;
  try {
    data = await gql(
      `{ me { id name email role team organization { id name plan { name monthlyCreditsPerUser } } } wallet { ${WALLET_FIELDS} } }`,
    );
  } catch (e) {
    if (e.code === 'UNAUTHENTICATED') {
      session.set(null);
      showSignIn('Your session has ended. Sign in again.');
    } else {
      fill(main, errorBox(e));
    }
    return;
  }
  store.me = data.me;
  setWallet(data.wallet);
  fill(
    who,
    h('span', {}, data.me.name || data.me.id),
    h('span', { class: 'muted' }, ` · ${data.me.organization.name} · ${data.me.role.toLowerCase()}`),
  );
  signOut.hidden = false;
  if (store.realtime) store.realtime.close();
  store.realtime = new Realtime(
    token,
    (status) => {
      live.dataset.status = status;
      fill(live, LIVE_WORDS[status] || '');
    },
    () => {
      session.set(null);
      showSignIn('Your session has ended. Sign in again.');
    },
  );
  store.realtime.subscribe(`subscription { walletUpdated { ${WALLET_FIELDS} } }`, {}, {
    next: (d) => setWallet(d.walletUpdated),
    error: (e) => console.error('walletUpdated failed', e.code, e.message),
  });
  store.realtime.subscribe(`subscription { activityAdded { ${ENTRY_FIELDS} } }`, {}, {
    next: (d) => addEntry(d.activityAdded),
    error: (e) => console.error('activityAdded failed', e.code, e.message),
  });
  renderNav();
  showRoute();
}

signOut.addEventListener('click', () => {
  session.set(null);
  history.replaceState(null, '', location.pathname);
  showSignIn();
});

window.addEventListener('hashchange', () => {
  showRoute();
  main.focus({ preventScroll: true });
});

let started = null;
session.onChange((token) => {
  if (token && token !== started) {
    started = token;
    start();
  }
});

session.init();
started = session.current();
start();
