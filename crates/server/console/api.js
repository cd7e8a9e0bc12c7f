// GraphQL over HTTP, and the API's error codes in words.

import { current } from './session.js';
import { h } from './dom.js';

export class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** Runs a query or mutation; resolves to `data`, rejects with an ApiError. */
export async function gql(query, variables = {}) {
  const token = current();
  let response;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/graphql-response+json, application/json',
        ...(token ? { authorization: `Bearer ${token}` } : {}),
      },
      body: JSON.stringify({ query, variables }),
    });
  } catch {
    throw new ApiError('NETWORK', 'network');
  }
  const body = await response.json().catch(() => null);
  if (!body) throw new ApiError('INTERNAL', `HTTP ${response.status}`);
  if (body.errors && body.errors.length) throw fromGraphql(body.errors[0]);
  return body.data;
}

export function fromGraphql(error) {
  return new ApiError(error?.extensions?.code || 'INTERNAL', error?.message || '');
}

const WORDS = {
  UNAUTHENTICATED: 'Your session has ended. Sign in again.',
  FORBIDDEN: 'You are not allowed to do this with your role.',
  NOT_FOUND: 'We could not find that. It may have been removed.',
  INSUFFICIENT_CREDITS: 'You do not have enough credits for this. Buy credits, or wait for your monthly allocation to reset.',
  SPEND_LIMIT_REACHED: 'You have reached the spending limit your administrator set for this billing cycle.',
  IDEMPOTENCY_CONFLICT: 'This was already done with different details. Reload the page and try again.',
  BYOK_KEY_INVALID: 'The provider refused this API key. Check that you copied the whole key and that it is still active.',
  PROVIDER_ERROR: 'The AI provider answered with an error. Try again in a moment.',
  PROVIDER_UNAVAILABLE: 'The AI provider cannot be reached right now. Try again later.',
  RATE_LIMITED: 'Too many requests in a short time. Wait a minute, then try again.',
  NETWORK: 'The server cannot be reached. Check your connection and try again.',
  INTERNAL: 'Something went wrong on our side. Try again; if it keeps happening, tell your administrator.',
};

/** The error in words a user understands. */
export function words(error) {
  const code = error?.code;
  if (code === 'BAD_USER_INPUT') {
    return `That was not accepted: ${error.message}`;
  }
  return WORDS[code] || WORDS.INTERNAL;
}

/** An alert box for an error; INSUFFICIENT_CREDITS offers Buy Credits. */
export function errorBox(error) {
  const offerBuy = error?.code === 'INSUFFICIENT_CREDITS';
  return h(
    'div',
    { class: 'alert error', role: 'alert', 'data-code': error?.code || 'INTERNAL' },
    h('p', {}, words(error)),
    offerBuy ? h('p', {}, h('a', { class: 'button primary', href: '#/buy' }, 'Buy Credits')) : null,
  );
}

/** An idempotency key (random, per attempt). */
export function newKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
