// Activity: the log with timestamp, feature, credits consumed and running
// balance; filters (kind, feature, dates); paging; new rows arrive live.

import { h, fill, field } from '../dom.js';
import { gql, errorBox } from '../api.js';
import { credits, delta, dateTime, feature, billingMode, KINDS, FEATURES, REQUEST_STATUS } from '../format.js';
import { onEntry, ENTRY_FIELDS } from '../store.js';

const PAGE = 20;

/** Local midnight of a YYYY-MM-DD, as RFC 3339. */
function dayStart(value, plusDays = 0) {
  if (!value) return null;
  const [y, m, d] = value.split('-').map(Number);
  return new Date(y, m - 1, d + plusDays).toISOString();
}

function describe(e) {
  const parts = [];
  if (e.kind === 'AI_USAGE') {
    parts.push(`${e.provider || ''}${e.model ? `/${e.model}` : ''}`);
    parts.push(`paid with ${billingMode(e.billingMode)}`);
    if (e.status && e.status !== 'SUCCEEDED') parts.push(REQUEST_STATUS[e.status] || e.status);
    if (e.inputTokens !== null && e.inputTokens !== undefined) parts.push(`${e.inputTokens} tokens in, ${e.outputTokens} out`);
  } else if (e.description) {
    parts.push(e.description);
  }
  return parts.filter(Boolean).join(' · ');
}

export function row(e) {
  return h(
    'tr',
    { 'data-entry': e.id, 'data-kind': e.kind },
    h('td', { 'data-label': 'When' }, h('time', { datetime: e.at }, dateTime(e.at))),
    h(
      'td',
      { 'data-label': 'What' },
      h('strong', {}, e.feature ? feature(e.feature) : KINDS[e.kind] || e.kind),
      h('div', { class: 'hint' }, e.feature ? [KINDS[e.kind], ' · ', describe(e)] : describe(e)),
    ),
    h('td', { 'data-label': 'Credits used', class: 'num', 'data-field': 'creditsConsumed' }, credits(e.creditsConsumed)),
    h(
      'td',
      { 'data-label': 'Change', class: 'num' },
      h('span', { title: 'Monthly' }, `monthly ${delta(e.monthlyDelta)}`),
      h('br', {}),
      h('span', { title: 'Permanent' }, `permanent ${delta(e.permanentDelta)}`),
    ),
    h('td', { 'data-label': 'Balance after', class: 'num', 'data-field': 'balanceAfter' }, credits(e.balanceAfter)),
  );
}

export function activityView(section) {
  const kind = h('select', { name: 'kind' }, h('option', { value: '' }, 'All kinds'), Object.entries(KINDS).map(([k, v]) => h('option', { value: k }, v)));
  const feat = h('select', { name: 'feature' }, h('option', { value: '' }, 'All features'), Object.entries(FEATURES).map(([k, v]) => h('option', { value: k }, v)));
  const from = h('input', { type: 'date', name: 'from' });
  const to = h('input', { type: 'date', name: 'to' });
  const filters = h(
    'form',
    { class: 'filters', 'aria-label': 'Filter the activity' },
    field('Kind', kind),
    field('Feature', feat),
    field('From', from),
    field('To (included)', to),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Apply'), h('button', { type: 'reset', class: 'link' }, 'Clear')),
  );
  const list = h('div', { 'aria-live': 'polite' }, h('p', { class: 'loading' }, 'Loading activity…'));
  const more = h('button', { type: 'button', hidden: true }, 'Show older entries');
  section.append(
    h('p', { class: 'lead' }, 'Every movement of your credits, newest first. The balance after each entry is monthly plus permanent credits.'),
    filters,
    list,
    h('div', { class: 'actions' }, more),
  );
  let tbody = null;
  let cursor = null;
  let filter = {};
  let stopped = false;
  let generation = 0;

  const currentFilter = () => {
    const f = {};
    if (kind.value) f.kinds = [kind.value];
    if (feat.value) f.features = [feat.value];
    if (from.value) f.from = dayStart(from.value);
    if (to.value) f.to = dayStart(to.value, 1);
    return f;
  };

  const load = async (append) => {
    const gen = append ? generation : ++generation;
    more.disabled = true;
    if (!append) fill(list, h('p', { class: 'loading' }, 'Loading activity…'));
    try {
      const data = await gql(
        `query($first: Int, $after: String, $filter: ActivityFilter) { activity(first: $first, after: $after, filter: $filter) { edges { cursor node { ${ENTRY_FIELDS} } } pageInfo { hasNextPage endCursor } } }`,
        { first: PAGE, after: append ? cursor : null, filter },
      );
      if (stopped || gen !== generation) return;
      const { edges, pageInfo } = data.activity;
      if (!append) {
        if (!edges.length) {
          tbody = null;
          fill(list, h('p', { class: 'empty' }, Object.keys(filter).length ? 'No activity matches these filters.' : 'No activity yet.'));
        } else {
          tbody = h('tbody', {});
          fill(
            list,
            h(
              'table',
              { class: 'table', 'data-table': 'activity' },
              h('caption', { class: 'sr-only' }, 'Activity, newest first'),
              h('thead', {}, h('tr', {}, ['When', 'What', 'Credits used', 'Change', 'Balance after'].map((t) => h('th', { scope: 'col' }, t)))),
              tbody,
            ),
          );
        }
      }
      if (tbody) for (const edge of edges) tbody.append(row(edge.node));
      cursor = pageInfo.endCursor;
      more.hidden = !pageInfo.hasNextPage;
    } catch (e) {
      if (!stopped) fill(list, errorBox(e));
    } finally {
      more.disabled = false;
    }
  };

  const matches = (e) =>
    (!filter.kinds || filter.kinds.includes(e.kind)) &&
    (!filter.features || filter.features.includes(e.feature)) &&
    (!filter.from || new Date(e.at) >= new Date(filter.from)) &&
    (!filter.to || new Date(e.at) < new Date(filter.to));

  const off = onEntry((e) => {
    if (!matches(e) || list.querySelector(`[data-entry="${CSS.escape(e.id)}"]`)) return;
    if (!tbody) {
      load(false);
      return;
    }
    const tr = row(e);
    tr.classList.add('new');
    tbody.prepend(tr);
  });

  filters.addEventListener('submit', (event) => {
    event.preventDefault();
    filter = currentFilter();
    load(false);
  });
  filters.addEventListener('reset', () => {
    setTimeout(() => {
      filter = {};
      load(false);
    });
  });
  more.addEventListener('click', () => load(true));
  load(false);
  return () => {
    stopped = true;
    off();
  };
}
