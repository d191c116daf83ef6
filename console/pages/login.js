// The login: one token field. The token goes to sessionStorage only once the server took it.

import { field, h, message, replace } from '../dom.js';

export const TITLE = 'Sign in';

export function render(view, { note, onToken }) {
  const input = h('input', {
    id: 'login-token',
    type: 'password',
    name: 'token',
    autocomplete: 'current-password',
    required: true,
    spellcheck: 'false',
  });
  const status = h('div', { id: 'login-status' });
  const button = h('button', { type: 'submit' }, 'Sign in');
  const form = h(
    'form',
    {
      class: 'login',
      onsubmit: async (ev) => {
        ev.preventDefault();
        const token = input.value.trim();
        if (!token) return;
        button.disabled = true;
        replace(status, message('info', 'Checking the token…'));
        const error = await onToken(token);
        button.disabled = false;
        if (error) {
          replace(status, h('p', { id: 'login-error', class: 'msg error', role: 'alert' }, error));
          input.select();
        }
      },
    },
    h('h1', {}, 'Sign in'),
    h(
      'p',
      { class: 'muted' },
      'Authentication is on. Paste an API token (strata token create, or the admin token). ',
      'It is kept in this tab only and sent with each request.',
    ),
    note ? message('info', note) : null,
    field('API token', input),
    button,
    status,
  );
  replace(view, form);
  input.focus();
}
