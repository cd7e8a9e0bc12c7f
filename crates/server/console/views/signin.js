// Sign-in: "sign in as" in development; in production the host application
// hands the console a token.

import { h, field } from '../dom.js';
import { signInMode, signInAs } from '../session.js';

export function signInView(message) {
  const box = h('section', { class: 'view signin', 'aria-labelledby': 'signin-title' });
  box.append(h('h1', { id: 'signin-title' }, 'Sign in'));
  if (message) box.append(h('div', { class: 'alert', role: 'status' }, h('p', {}, message)));
  if (signInMode() !== 'development') {
    box.append(
      h(
        'p',
        {},
        'Open this console from your application: it signs you in. ',
        'If you came here directly, go back to the application and open Settings › AI there.',
      ),
    );
    return box;
  }
  const sub = h('input', { name: 'sub', required: true, autocomplete: 'username', value: 'alice' });
  const org = h('input', { name: 'org', required: true, autocomplete: 'organization', value: 'acme' });
  const role = h(
    'select',
    { name: 'role' },
    h('option', { value: 'member' }, 'Member'),
    h('option', { value: 'admin' }, 'Administrator'),
  );
  const name = h('input', { name: 'name', autocomplete: 'name', value: '' });
  const team = h('input', { name: 'team', value: '' });
  const problem = h('div', { role: 'alert', class: 'alert error', hidden: true });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h(
    'form',
    {
      class: 'card form',
      onsubmit: async (event) => {
        event.preventDefault();
        problem.hidden = true;
        button.disabled = true;
        try {
          await signInAs({
            sub: sub.value.trim(),
            org: org.value.trim(),
            role: role.value,
            name: name.value.trim() || undefined,
            team: team.value.trim() || undefined,
          });
        } catch (e) {
          problem.replaceChildren(h('p', {}, e.message));
          problem.hidden = false;
          button.disabled = false;
        }
      },
    },
    h(
      'p',
      { class: 'hint' },
      'Development server: sign in as any user of any organization. Users and organizations are created on first sign-in.',
    ),
    field('User id', sub),
    field('Organization', org),
    field('Role', role, 'Administrators also see their organization’s usage.'),
    field('Name (optional)', name),
    field('Team (optional)', team),
    problem,
    h('div', { class: 'actions' }, button),
  );
  box.append(form);
  return box;
}
