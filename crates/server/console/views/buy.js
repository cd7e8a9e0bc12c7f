// Buy Credits: the packs and their price; buying completes at once with the
// dev payment provider, or sends the user to the payment provider's checkout
// (the purchase is shown when they come back with ?purchase=<id>); the
// purchase history with status.

import { h, fill } from '../dom.js';
import { gql, errorBox, newKey } from '../api.js';
import { credits, price, dateTime, PURCHASE_STATUS } from '../format.js';
import { onWallet } from '../store.js';

const PURCHASE_FIELDS = 'id status createdAt completedAt checkoutUrl pack { id name credits priceCents currency }';

export function buyView(section, params) {
  const notice = h('div', { 'aria-live': 'polite' });
  const packs = h('div', { class: 'grid packs' }, h('p', { class: 'loading' }, 'Loading credit packs…'));
  const history = h('div', {}, h('p', { class: 'loading' }, 'Loading purchases…'));
  section.append(
    h('p', { class: 'lead' }, 'Credit packs add permanent credits: they never expire and are spent after your monthly allocation.'),
    notice,
    h('h2', {}, 'Credit packs'),
    packs,
    h('h2', {}, 'Purchase history'),
    history,
  );
  let stopped = false;
  let poll = null;

  const loadHistory = async () => {
    try {
      const data = await gql(`{ purchases { ${PURCHASE_FIELDS} } }`);
      if (!stopped) renderHistory(data.purchases);
      return data.purchases;
    } catch (e) {
      if (!stopped) fill(history, errorBox(e));
      return [];
    }
  };

  const renderHistory = (list) => {
    if (!list.length) {
      fill(history, h('p', { class: 'empty' }, 'No purchases yet.'));
      return;
    }
    fill(
      history,
      h(
        'table',
        { class: 'table', 'data-table': 'purchases' },
        h('caption', { class: 'sr-only' }, 'Your purchases, newest first'),
        h('thead', {}, h('tr', {}, ['Date', 'Pack', 'Credits', 'Price', 'Status'].map((t) => h('th', { scope: 'col' }, t)))),
        h(
          'tbody',
          {},
          list.map((p) =>
            h(
              'tr',
              { 'data-purchase': p.id },
              h('td', { 'data-label': 'Date' }, dateTime(p.createdAt)),
              h('td', { 'data-label': 'Pack' }, p.pack.name),
              h('td', { 'data-label': 'Credits', class: 'num' }, credits(p.pack.credits)),
              h('td', { 'data-label': 'Price', class: 'num' }, price(p.pack.priceCents, p.pack.currency)),
              h(
                'td',
                { 'data-label': 'Status' },
                h('span', { class: `status status-${p.status.toLowerCase()}`, 'data-status': p.status }, PURCHASE_STATUS[p.status] || p.status),
                p.status === 'PENDING' && p.checkoutUrl ? [' ', h('a', { href: p.checkoutUrl }, 'Complete payment')] : null,
              ),
            ),
          ),
        ),
      ),
    );
  };

  const done = (p) => {
    if (p.status === 'COMPLETED') {
      fill(
        notice,
        h(
          'div',
          { class: 'alert success', role: 'status', 'data-purchase-result': p.status },
          h('p', {}, `Thank you: ${credits(p.pack.credits)} credits (${p.pack.name}) were added to your permanent credits.`),
          h('p', {}, h('a', { href: '#/wallet' }, 'See your wallet')),
        ),
      );
    } else if (p.status === 'PENDING') {
      fill(notice, h('div', { class: 'alert', role: 'status', 'data-purchase-result': p.status }, h('p', {}, `Your purchase of ${p.pack.name} is waiting for the payment to be confirmed. This page updates when it is.`)));
    } else {
      fill(notice, h('div', { class: 'alert error', role: 'alert', 'data-purchase-result': p.status }, h('p', {}, `Your purchase of ${p.pack.name} ${p.status === 'FAILED' ? 'did not go through; nothing was charged or added.' : 'was refunded.'}`)));
    }
  };

  const buy = async (pack, button) => {
    button.disabled = true;
    fill(notice, h('p', { class: 'loading' }, `Buying ${pack.name}…`));
    try {
      const data = await gql(
        `mutation($p: ID!, $k: String!) { purchaseCredits(packId: $p, idempotencyKey: $k) { ${PURCHASE_FIELDS} } }`,
        { p: pack.id, k: newKey() },
      );
      const p = data.purchaseCredits;
      if (p.status === 'PENDING' && p.checkoutUrl) {
        fill(notice, h('p', { class: 'loading' }, 'Taking you to the payment page…'));
        location.assign(p.checkoutUrl);
        return;
      }
      done(p);
      loadHistory();
    } catch (e) {
      fill(notice, errorBox(e));
    } finally {
      button.disabled = false;
    }
  };

  (async () => {
    try {
      const data = await gql('{ creditPacks { id name credits priceCents currency } }');
      if (stopped) return;
      if (!data.creditPacks.length) {
        fill(packs, h('p', { class: 'empty' }, 'No credit packs are on sale right now.'));
        return;
      }
      fill(
        packs,
        data.creditPacks.map((pack) => {
          const button = h('button', { type: 'button', class: 'primary', 'data-pack': pack.id }, `Buy ${pack.name}`);
          button.addEventListener('click', () => buy(pack, button));
          return h(
            'article',
            { class: 'card pack', 'aria-labelledby': `pack-${pack.id}` },
            h('h3', { id: `pack-${pack.id}` }, pack.name),
            h('p', { class: 'big' }, credits(pack.credits), h('span', { class: 'unit' }, ' credits')),
            h('p', { class: 'price' }, price(pack.priceCents, pack.currency)),
            button,
          );
        }),
      );
    } catch (e) {
      if (!stopped) fill(packs, errorBox(e));
    }
  })();

  // Back from the payment provider: show that purchase until it settles.
  const returned = params.get('purchase') || new URLSearchParams(location.search).get('purchase');
  const watch = async () => {
    const list = await loadHistory();
    const p = list.find((x) => x.id === returned);
    if (!p || stopped) {
      if (!p && !stopped) fill(notice, h('div', { class: 'alert error', role: 'alert' }, h('p', {}, 'We could not find that purchase.')));
      return;
    }
    done(p);
    if (p.status === 'PENDING') poll = setTimeout(watch, 2000);
  };
  if (returned) watch();
  else loadHistory();

  // A purchase completed elsewhere (the webhook) shows up without a reload.
  const off = onWallet(() => {
    if (!returned) loadHistory();
  });
  return () => {
    stopped = true;
    clearTimeout(poll);
    off();
  };
}
