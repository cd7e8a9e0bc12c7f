// The session token: where it comes from and where it lives.
//
// - development: the console mints one through POST /dev/token ("sign in as").
// - production: the host application hands it over, either in the URL
//   fragment (`/#token=<JWT>`, removed from the address bar at once with
//   history.replaceState, so it is neither bookmarked nor sent anywhere) or by
//   `postMessage({type: "creditgate:token", token})` from this origin or a
//   configured CORS origin (the console posts `{type: "creditgate:ready"}` to
//   its opener or parent when it is ready to receive it).
//
// The token lives in this tab only: in memory and in sessionStorage (so a
// reload of the tab keeps the session); never in localStorage or a cookie.

const KEY = 'creditgate.session';

let token = null;
const listeners = new Set();

function meta(name) {
  const el = document.querySelector(`meta[name="${name}"]`);
  return el ? el.getAttribute('content') || '' : '';
}

/** "development" (sign in as anyone) or "host" (the host application signs in). */
export function signInMode() {
  return meta('creditgate-sign-in') === 'development' ? 'development' : 'host';
}

function hostOrigins() {
  return meta('creditgate-host-origins').split(/\s+/).filter(Boolean);
}

export function current() {
  return token;
}

export function set(newToken) {
  token = newToken || null;
  try {
    if (token) sessionStorage.setItem(KEY, token);
    else sessionStorage.removeItem(KEY);
  } catch {
    // Storage may be off: the token then lives in memory only.
  }
  for (const fn of listeners) fn(token);
}

export function onChange(fn) {
  listeners.add(fn);
}

/** Reads a token handed over in the fragment, else the tab's stored one. */
export function init() {
  const params = new URLSearchParams(location.hash.slice(1));
  const fromFragment = params.get('token');
  if (fromFragment) {
    params.delete('token');
    const rest = params.toString();
    history.replaceState(null, '', location.pathname + location.search + (rest ? `#${rest}` : ''));
    set(fromFragment);
  } else {
    try {
      token = sessionStorage.getItem(KEY);
    } catch {
      token = null;
    }
  }
  window.addEventListener('message', (event) => {
    const trusted = event.origin === location.origin || hostOrigins().includes(event.origin);
    const data = event.data;
    if (!trusted || !data || data.type !== 'creditgate:token' || typeof data.token !== 'string') return;
    set(data.token);
  });
  const host = window.opener || (window.parent !== window ? window.parent : null);
  if (host) host.postMessage({ type: 'creditgate:ready' }, '*');
}

/** Development sign-in: asks the server to mint a token. */
export async function signInAs({ sub, org, role, name, team }) {
  let response;
  try {
    response = await fetch('/dev/token', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ sub, org, role, name, team }),
    });
  } catch {
    throw new Error('The server cannot be reached. Check that it is running.');
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.error?.message || 'Signing in is not available on this server.');
  }
  set(body.token);
}
