// Try AI: pick a feature, type a prompt, see the estimate, run it streamed
// (aiStream) and see what it was charged.

import { h, fill, field } from '../dom.js';
import { gql, errorBox, newKey } from '../api.js';
import { credits, feature, billingMode, isZero } from '../format.js';
import { store } from '../store.js';

export function tryView(section) {
  const feat = h('select', { name: 'feature' });
  const about = h('p', { class: 'hint', 'aria-live': 'polite' });
  const prompt = h('textarea', { name: 'prompt', rows: 4, required: true, placeholder: 'Summarize what my team did this week.' });
  const estimate = h('p', { class: 'estimate', 'aria-live': 'polite', 'data-field': 'estimate' }, 'Type a prompt to see what it may cost.');
  const run = h('button', { type: 'submit', class: 'primary' }, 'Run');
  const stop = h('button', { type: 'button', hidden: true }, 'Stop');
  const answer = h('div', { class: 'answer', 'aria-live': 'polite', 'data-field': 'answer' });
  const charge = h('div', { 'aria-live': 'polite', 'data-field': 'charge' });
  const form = h(
    'form',
    { class: 'card form' },
    field('Feature', feat),
    about,
    field('Prompt', prompt),
    estimate,
    h('div', { class: 'actions' }, run, stop),
  );
  section.append(
    h('p', { class: 'lead' }, 'Run an AI request the way the application’s features do, and see what it costs.'),
    form,
    h('h2', {}, 'Answer'),
    answer,
    charge,
  );
  let features = [];
  let stopped = false;
  let timer = null;
  let unsubscribe = null;
  let asked = 0;

  const input = () => ({
    feature: feat.value,
    messages: [{ role: 'user', content: prompt.value }],
  });

  const estimateNow = async () => {
    if (!prompt.value.trim() || !feat.value) {
      fill(estimate, 'Type a prompt to see what it may cost.');
      return;
    }
    const n = ++asked;
    try {
      const data = await gql('query($i: AiRequestInput!) { estimateCost(input: $i) { maxCredits billingMode creditsIfPaid } }', { i: input() });
      if (stopped || n !== asked) return;
      const e = data.estimateCost;
      if (e.billingMode === 'BYOK') {
        fill(estimate, 'Paid with your own key: ', h('strong', {}, '0 credits'), ` (with credits it would cost at most ${credits(e.creditsIfPaid)}).`);
      } else {
        fill(estimate, 'At most ', h('strong', {}, `${credits(e.maxCredits)} credits`), ' are held while it runs; you are charged only for what it uses.');
      }
      estimate.dataset.mode = e.billingMode;
    } catch (err) {
      if (!stopped && n === asked) fill(estimate, errorBox(err));
    }
  };
  const later = () => {
    clearTimeout(timer);
    timer = setTimeout(estimateNow, 300);
  };

  const showAbout = () => {
    const f = features.find((x) => x.feature === feat.value);
    fill(about, f ? `${f.description} Answered by ${f.defaultProvider}/${f.defaultModel} unless your own key routes it elsewhere.` : '');
  };

  const finish = () => {
    unsubscribe = null;
    run.disabled = false;
    stop.hidden = true;
  };

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!prompt.value.trim() || unsubscribe) return;
    if (!store.realtime) return;
    run.disabled = true;
    stop.hidden = false;
    fill(answer);
    answer.dataset.state = 'streaming';
    fill(charge, h('p', { class: 'loading' }, 'Running…'));
    const text = document.createTextNode('');
    answer.append(text);
    unsubscribe = store.realtime.subscribe(
      'subscription($i: AiRequestInput!) { aiStream(input: $i) { delta result { id billingMode provider model inputTokens outputTokens creditsCharged wallet { available } } } }',
      { i: { ...input(), idempotencyKey: newKey() } },
      {
        once: true,
        next: (data) => {
          const ev = data.aiStream;
          if (ev.delta) text.appendData(ev.delta);
          if (ev.result) {
            const r = ev.result;
            answer.dataset.state = 'done';
            fill(
              charge,
              h(
                'div',
                { class: 'alert success', role: 'status', 'data-charged': r.creditsCharged, 'data-mode': r.billingMode },
                h(
                  'p',
                  {},
                  'Charged ',
                  h('strong', {}, `${credits(r.creditsCharged)} credits`),
                  ` — paid with ${billingMode(r.billingMode)}`,
                  r.billingMode === 'BYOK' && isZero(r.creditsCharged) ? ', no credits used' : '',
                  `. ${r.provider}/${r.model}, ${r.inputTokens} tokens in, ${r.outputTokens} out.`,
                ),
                h('p', {}, `Available now: ${credits(r.wallet.available)} credits. `, h('a', { href: '#/activity' }, 'See it in Activity')),
              ),
            );
          }
        },
        error: (err) => {
          answer.dataset.state = 'failed';
          fill(charge, errorBox(err));
          finish();
        },
        complete: finish,
      },
    );
  });
  stop.addEventListener('click', () => {
    if (unsubscribe) unsubscribe();
    answer.dataset.state = 'stopped';
    fill(charge, h('p', {}, 'Stopped. What was produced until then is charged; see Activity.'));
    finish();
  });
  feat.addEventListener('change', () => {
    showAbout();
    later();
  });
  prompt.addEventListener('input', later);

  (async () => {
    try {
      const data = await gql('{ aiFeatures { feature description defaultProvider defaultModel } }');
      if (stopped) return;
      features = data.aiFeatures;
      fill(feat, features.map((f) => h('option', { value: f.feature }, feature(f.feature))));
      showAbout();
    } catch (e) {
      if (!stopped) fill(about, errorBox(e));
    }
  })();
  return () => {
    stopped = true;
    clearTimeout(timer);
    if (unsubscribe) unsubscribe();
  };
}
