// BYOK: the providers; enter a key and save (a refused key says why); the
// saved key's hint and last use; remove it; the preferred provider and the
// fallback-to-credits switch. A key is never shown or kept after saving: the
// field is emptied whatever the answer, and it is never stored.

import { h, fill, field } from '../dom.js';
import { gql, errorBox } from '../api.js';
import { dateTime } from '../format.js';
import { setWallet, WALLET_FIELDS } from '../store.js';

export function byokView(section) {
  const notice = h('div', { 'aria-live': 'polite' });
  const keys = h('div', {}, h('p', { class: 'loading' }, 'Loading your keys…'));
  const provider = h('select', { name: 'provider' });
  const apiKey = h('input', {
    type: 'password',
    name: 'apiKey',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
  });
  const save = h('button', { type: 'submit', class: 'primary' }, 'Save');
  const preferred = h('select', { name: 'preferredProvider' });
  const fallback = h('input', { type: 'checkbox', name: 'fallbackToCredits', id: 'fallback' });
  const saveSettings = h('button', { type: 'submit' }, 'Save settings');
  let stopped = false;
  let providers = [];
  let saved = [];

  const keyForm = h(
    'form',
    { class: 'card form', 'aria-labelledby': 'byok-add', autocomplete: 'off' },
    h('h2', { id: 'byok-add' }, 'Add or replace a key'),
    field('Provider', provider),
    field('API key', apiKey, 'The key is checked with the provider, then stored encrypted. It is never shown again, to you or to anyone.'),
    h('div', { class: 'actions' }, save),
  );
  const settingsForm = h(
    'form',
    { class: 'card form', 'aria-labelledby': 'byok-settings' },
    h('h2', { id: 'byok-settings' }, 'How your keys are used'),
    field('Preferred provider', preferred, 'When a feature’s usual provider is one you have no key for, your preferred key’s provider answers instead, at no credit cost.'),
    h(
      'div',
      { class: 'field check' },
      fallback,
      h('label', { for: 'fallback' }, 'Fall back to credits when my key fails'),
      h('p', { class: 'hint', id: 'fallback-hint' }, 'Off: when the provider refuses your key or fails, the request fails and costs nothing. On: it is run again with your credits.'),
    ),
    h('div', { class: 'actions' }, saveSettings),
  );
  fallback.setAttribute('aria-describedby', 'fallback-hint');
  section.append(
    h('p', { class: 'lead' }, 'Bring your own key: requests to a provider you have a key for go through your key and use no credits.'),
    notice,
    h('h2', {}, 'Your keys'),
    keys,
    keyForm,
    settingsForm,
  );

  // A key changes how AI is paid (the wallet's billingMode) without
  // changing the wallet, so no walletUpdated event comes: read it again.
  const refreshWallet = async () => {
    try {
      const data = await gql(`{ wallet { ${WALLET_FIELDS} } }`);
      setWallet(data.wallet);
    } catch {
      // The next walletUpdated brings it.
    }
  };

  const renderKeys = () => {
    if (!saved.length) {
      fill(keys, h('p', { class: 'empty' }, 'You have no keys. AI requests are paid with credits.'));
    } else {
      fill(
        keys,
        h(
          'ul',
          { class: 'keys' },
          saved.map((k) => {
            const name = providers.find((p) => p.id === k.provider)?.name || k.provider;
            const remove = h('button', { type: 'button', class: 'danger', 'aria-label': `Remove the ${name} key` }, 'Remove');
            remove.addEventListener('click', () => removeKey(k.provider, name, remove));
            return h(
              'li',
              { class: 'card key', 'data-key': k.provider },
              h('div', {}, h('strong', {}, name), ' ', h('code', { 'data-field': 'hint' }, k.hint)),
              h('div', { class: 'hint' }, `Added ${dateTime(k.createdAt)} · `, h('span', { 'data-field': 'lastUsedAt' }, k.lastUsedAt ? `last used ${dateTime(k.lastUsedAt)}` : 'not used yet')),
              remove,
            );
          }),
        ),
      );
    }
    const current = preferred.value;
    fill(
      preferred,
      h('option', { value: '' }, 'No preference'),
      saved.map((k) => h('option', { value: k.provider }, providers.find((p) => p.id === k.provider)?.name || k.provider)),
    );
    preferred.value = current && saved.some((k) => k.provider === current) ? current : preferred.value;
  };

  const load = async () => {
    try {
      const data = await gql('{ providers { id name models } byokKeys { provider hint createdAt lastUsedAt } aiSettings { preferredProvider fallbackToCredits } }');
      if (stopped) return;
      providers = data.providers;
      saved = data.byokKeys;
      fill(provider, providers.map((p) => h('option', { value: p.id }, p.name)));
      renderKeys();
      preferred.value = data.aiSettings.preferredProvider || '';
      fallback.checked = data.aiSettings.fallbackToCredits;
    } catch (e) {
      if (!stopped) fill(keys, errorBox(e));
    }
  };

  keyForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const key = apiKey.value.trim();
    // The key leaves the page once, in this request; the field is emptied now.
    apiKey.value = '';
    if (!key) return;
    save.disabled = true;
    fill(notice, h('p', { class: 'loading' }, 'Checking the key with the provider…'));
    try {
      const data = await gql('mutation($p: String!, $k: String!) { setByokKey(provider: $p, apiKey: $k) { provider hint createdAt lastUsedAt } }', {
        p: provider.value,
        k: key,
      });
      const k = data.setByokKey;
      saved = [...saved.filter((x) => x.provider !== k.provider), k];
      renderKeys();
      refreshWallet();
      fill(notice, h('div', { class: 'alert success', role: 'status', 'data-result': 'saved' }, h('p', {}, `Key saved (${k.hint}). Your requests to this provider now use it and cost no credits.`)));
    } catch (e) {
      fill(notice, errorBox(e));
    } finally {
      save.disabled = false;
    }
  });

  const removeKey = async (id, name, button) => {
    button.disabled = true;
    try {
      await gql('mutation($p: String!) { removeByokKey(provider: $p) }', { p: id });
      saved = saved.filter((k) => k.provider !== id);
      renderKeys();
      refreshWallet();
      fill(notice, h('div', { class: 'alert success', role: 'status' }, h('p', {}, `The ${name} key was removed; requests to ${name} are paid with credits again.`)));
    } catch (e) {
      fill(notice, errorBox(e));
      button.disabled = false;
    }
  };

  settingsForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    saveSettings.disabled = true;
    try {
      await gql('mutation($p: String, $f: Boolean!) { setAiSettings(preferredProvider: $p, fallbackToCredits: $f) { preferredProvider fallbackToCredits } }', {
        p: preferred.value || null,
        f: fallback.checked,
      });
      refreshWallet();
      fill(notice, h('div', { class: 'alert success', role: 'status' }, h('p', {}, 'Settings saved.')));
    } catch (e) {
      fill(notice, errorBox(e));
    } finally {
      saveSettings.disabled = false;
    }
  });

  load();
  return () => {
    stopped = true;
    apiKey.value = '';
  };
}
