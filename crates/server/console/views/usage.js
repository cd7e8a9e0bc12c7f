// Usage (administrators): the organization's totals, per user, by feature,
// the trend as a chart (day / week / month over a date range), and the
// credits saved by BYOK.

import { h, s, fill, field } from '../dom.js';
import { gql, errorBox } from '../api.js';
import { credits, feature, date, isoDay } from '../format.js';

const TOTALS = 'credits requests byokRequests inputTokens outputTokens creditsSaved';

function dayStart(value, plusDays = 0) {
  const [y, m, d] = value.split('-').map(Number);
  return new Date(y, m - 1, d + plusDays).toISOString();
}

function table(name, caption, head, rows) {
  return h(
    'table',
    { class: 'table', 'data-table': name },
    h('caption', { class: 'sr-only' }, caption),
    h('thead', {}, h('tr', {}, head.map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows),
  );
}

function totalsCells(t) {
  return [
    h('td', { 'data-label': 'Credits', class: 'num' }, credits(t.credits)),
    h('td', { 'data-label': 'Requests', class: 'num' }, String(t.requests)),
    h('td', { 'data-label': 'Through BYOK', class: 'num' }, String(t.byokRequests)),
    h('td', { 'data-label': 'Saved by BYOK', class: 'num' }, credits(t.creditsSaved)),
  ];
}

/** The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `v`. */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= v);
}

/** A bar chart of credits per bucket, drawn as SVG. */
export function chart(trend, granularity) {
  const width = 640;
  const height = 220;
  const pad = { top: 12, right: 8, bottom: 28, left: 48 };
  const values = trend.map((p) => Number(p.totals.credits));
  const max = niceMax(Math.max(0, ...values));
  const innerW = width - pad.left - pad.right;
  const innerH = height - pad.top - pad.bottom;
  const step = innerW / Math.max(1, trend.length);
  const barW = Math.max(2, step * 0.7);
  const label = (p) => {
    const d = new Date(p.bucketStart);
    return granularity === 'MONTH'
      ? d.toLocaleDateString(undefined, { month: 'short', year: '2-digit' })
      : d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
  };
  const every = Math.ceil(trend.length / 8);
  const total = values.reduce((a, b) => a + b, 0);
  const svg = s(
    'svg',
    {
      viewBox: `0 0 ${width} ${height}`,
      role: 'img',
      'aria-labelledby': 'trend-title',
      class: 'chart',
      'data-chart': 'trend',
      preserveAspectRatio: 'xMidYMid meet',
    },
    s('title', { id: 'trend-title' }, `Credits consumed per ${granularity.toLowerCase()}, ${trend.length} periods, ${total} credits in all`),
    [0, 0.5, 1].map((f) => {
      const y = pad.top + innerH * (1 - f);
      return [
        s('line', { x1: pad.left, x2: width - pad.right, y1: y, y2: y, class: 'grid-line' }),
        s('text', { x: pad.left - 6, y: y + 4, 'text-anchor': 'end', class: 'axis' }, String(Math.round(max * f * 1000) / 1000)),
      ];
    }),
    trend.map((p, i) => {
      const v = values[i];
      const bh = (v / max) * innerH;
      const x = pad.left + i * step + (step - barW) / 2;
      return [
        s(
          'rect',
          { x, y: pad.top + innerH - bh, width: barW, height: Math.max(0, bh), class: 'bar-rect', 'data-credits': p.totals.credits },
          s('title', {}, `${label(p)}: ${credits(p.totals.credits)} credits, ${p.totals.requests} requests`),
        ),
        i % every === 0 ? s('text', { x: x + barW / 2, y: height - 8, 'text-anchor': 'middle', class: 'axis' }, label(p)) : null,
      ];
    }),
  );
  return svg;
}

export function usageView(section) {
  const today = new Date();
  const monthAgo = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 29);
  const from = h('input', { type: 'date', name: 'from', value: isoDay(monthAgo), required: true });
  const to = h('input', { type: 'date', name: 'to', value: isoDay(today), required: true });
  const granularity = h(
    'select',
    { name: 'granularity' },
    h('option', { value: 'DAY' }, 'Day'),
    h('option', { value: 'WEEK' }, 'Week'),
    h('option', { value: 'MONTH' }, 'Month'),
  );
  const controls = h(
    'form',
    { class: 'filters', 'aria-label': 'Usage period' },
    field('From', from),
    field('To (included)', to),
    field('Group by', granularity),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Show')),
  );
  const body = h('div', { 'aria-live': 'polite' });
  section.append(h('p', { class: 'lead' }, 'What your organization’s members consumed, and what their own keys saved.'), controls, body);
  let stopped = false;

  const load = async () => {
    if (!from.value || !to.value) return;
    fill(body, h('p', { class: 'loading' }, 'Loading usage…'));
    const g = granularity.value;
    try {
      const data = await gql(
        `query($from: DateTime!, $to: DateTime!, $g: Granularity) { orgUsage(from: $from, to: $to, granularity: $g) { totals { ${TOTALS} } perUser(first: 100) { user { id name team } totals { ${TOTALS} } } byFeature { feature totals { ${TOTALS} } } trend { bucketStart totals { credits requests } } } }`,
        { from: dayStart(from.value), to: dayStart(to.value, 1), g },
      );
      if (stopped) return;
      const u = data.orgUsage;
      const t = u.totals;
      fill(
        body,
        h(
          'dl',
          { class: 'stats grid totals', 'data-totals': '' },
          [
            ['Credits consumed', credits(t.credits), 'credits'],
            ['Requests', String(t.requests), 'requests'],
            ['Through BYOK', String(t.byokRequests), 'byokRequests'],
            ['Tokens', `${t.inputTokens} in · ${t.outputTokens} out`, 'tokens'],
            ['Credits saved by BYOK', credits(t.creditsSaved), 'creditsSaved'],
          ].map(([k, v, f]) => h('div', { class: 'stat card' }, h('dt', {}, k), h('dd', { class: 'amount', 'data-field': f }, v))),
        ),
        h('h2', {}, 'Trend'),
        u.trend.length ? h('div', { class: 'card chart-box' }, chart(u.trend, g)) : h('p', { class: 'empty' }, 'No periods in this range.'),
        h('h2', {}, 'Per user'),
        u.perUser.length
          ? table(
              'per-user',
              'Usage per user, most credits first',
              ['User', 'Credits', 'Requests', 'Through BYOK', 'Saved by BYOK'],
              u.perUser.map((p) =>
                h(
                  'tr',
                  { 'data-user': p.user.id },
                  h('td', { 'data-label': 'User' }, h('strong', {}, p.user.name || p.user.id), p.user.name ? h('div', { class: 'hint' }, p.user.id + (p.user.team ? ` · ${p.user.team}` : '')) : null),
                  totalsCells(p.totals),
                ),
              ),
            )
          : h('p', { class: 'empty' }, 'Nobody used AI in this period.'),
        h('h2', {}, 'By feature'),
        u.byFeature.length
          ? table(
              'by-feature',
              'Usage by feature',
              ['Feature', 'Credits', 'Requests', 'Through BYOK', 'Saved by BYOK'],
              u.byFeature.map((f) => h('tr', { 'data-feature': f.feature }, h('td', { 'data-label': 'Feature' }, feature(f.feature)), totalsCells(f.totals))),
            )
          : h('p', { class: 'empty' }, 'No feature was used in this period.'),
        h('p', { class: 'hint' }, `From ${date(dayStart(from.value))} to ${date(dayStart(to.value))}, included.`),
      );
    } catch (e) {
      if (!stopped) fill(body, errorBox(e));
    }
  };
  controls.addEventListener('submit', (event) => {
    event.preventDefault();
    load();
  });
  granularity.addEventListener('change', load);
  load();
  return () => {
    stopped = true;
  };
}
