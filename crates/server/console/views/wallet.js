// Wallet: monthly allocation and what is left of it, permanent credits,
// held, available, when the allocation resets, how AI is paid now. Live.

import { h, fill } from '../dom.js';
import { store, onWallet } from '../store.js';
import { credits, ratio, dateTime, until } from '../format.js';

function stat(label, fieldName, hint) {
  return h(
    'div',
    { class: 'stat' },
    h('dt', {}, label),
    h('dd', {}, h('span', { class: 'amount', 'data-field': fieldName }, '—'), ' ', h('span', { class: 'unit' }, 'credits')),
    hint ? h('dd', { class: 'hint' }, hint) : null,
  );
}

export function walletView(section) {
  const bar = h('div', { class: 'bar-fill' });
  const meter = h(
    'div',
    { class: 'bar', role: 'progressbar', 'aria-label': 'Monthly allocation left', 'aria-valuemin': 0, 'aria-valuemax': 100 },
    bar,
  );
  const monthly = h('p', { class: 'big' });
  const resets = h('p', { class: 'hint', 'data-field': 'cycleEnd' });
  const paidWith = h('p', { 'data-field': 'billingMode' });
  const plan = store.me?.organization?.plan;
  section.append(
    h(
      'div',
      { class: 'grid' },
      h(
        'article',
        { class: 'card', 'aria-labelledby': 'w-monthly' },
        h('h2', { id: 'w-monthly' }, 'Monthly allocation'),
        monthly,
        meter,
        resets,
        plan ? h('p', { class: 'hint' }, `${plan.name} plan: ${credits(plan.monthlyCreditsPerUser)} credits per month. Unused monthly credits do not roll over.`) : null,
      ),
      h(
        'article',
        { class: 'card', 'aria-labelledby': 'w-balance' },
        h('h2', { id: 'w-balance' }, 'Balance'),
        h(
          'dl',
          { class: 'stats' },
          stat('Permanent credits', 'permanentBalance', 'Bought or earned; they never expire.'),
          stat('Held', 'held', 'Set aside for AI requests still running.'),
          stat('Available', 'available', 'What you can spend now: monthly plus permanent, less held.'),
        ),
        h('p', { class: 'actions' }, h('a', { class: 'button primary', href: '#/buy' }, 'Buy Credits')),
      ),
      h(
        'article',
        { class: 'card', 'aria-labelledby': 'w-paid' },
        h('h2', { id: 'w-paid' }, 'How AI is paid'),
        paidWith,
        h('p', { class: 'hint' }, 'Monthly credits are spent first, then permanent credits.'),
      ),
    ),
  );

  const render = (w) => {
    fill(
      monthly,
      h('span', { class: 'amount', 'data-field': 'monthlyBalance' }, credits(w.monthlyBalance)),
      ' of ',
      h('span', { 'data-field': 'monthlyAllocation' }, credits(w.monthlyAllocation)),
      ' credits left',
    );
    const pct = Math.round(ratio(w.monthlyBalance, w.monthlyAllocation) * 100);
    bar.style.width = `${pct}%`;
    meter.setAttribute('aria-valuenow', String(pct));
    fill(resets, `Resets ${until(w.cycleEnd)}, on ${dateTime(w.cycleEnd)}.`);
    for (const key of ['permanentBalance', 'held', 'available']) {
      const el = section.querySelector(`[data-field="${key}"]`);
      if (el) fill(el, credits(w[key]));
    }
    if (w.billingMode === 'BYOK') {
      fill(paidWith, h('strong', {}, 'With your own key (BYOK).'), ' Requests to a provider you have a key for use no credits. ', h('a', { href: '#/byok' }, 'Manage keys'));
    } else {
      fill(paidWith, h('strong', {}, 'With credits.'), ' ', h('a', { href: '#/byok' }, 'Bring your own key'), ' to pay the provider directly instead.');
    }
    paidWith.dataset.mode = w.billingMode;
  };
  if (store.wallet) render(store.wallet);
  return onWallet(render);
}
