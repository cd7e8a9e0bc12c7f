// A small graphql-transport-ws client: connection_init with the token,
// subscribe / next / error / complete, ping -> pong, and reconnection with
// backoff that re-subscribes the lasting subscriptions (walletUpdated sends
// the wallet as it is first, so a reconnect catches up by itself).

import { fromGraphql, ApiError } from './api.js';

export class Realtime {
  constructor(token, onStatus, onSessionEnded) {
    this.token = token;
    this.onStatus = onStatus;
    this.onSessionEnded = onSessionEnded;
    this.subs = new Map();
    this.nextId = 0;
    this.ws = null;
    this.ready = false;
    this.closed = false;
    this.retry = 0;
    this.timer = null;
    this.connect();
  }

  connect() {
    if (this.closed) return;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${scheme}//${location.host}/graphql/ws`, 'graphql-transport-ws');
    this.ws = ws;
    this.ready = false;
    this.onStatus('connecting');
    ws.addEventListener('open', () => {
      this.send({ type: 'connection_init', payload: { Authorization: `Bearer ${this.token}` } });
    });
    ws.addEventListener('message', (event) => this.receive(event.data));
    ws.addEventListener('close', (event) => this.closedBy(event.code));
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    switch (message.type) {
      case 'connection_ack':
        this.ready = true;
        this.retry = 0;
        this.onStatus('live');
        for (const [id, sub] of this.subs) this.start(id, sub);
        break;
      case 'ping':
        this.send({ type: 'pong' });
        break;
      case 'next': {
        const sub = this.subs.get(message.id);
        if (!sub) break;
        const payload = message.payload || {};
        if (payload.errors && payload.errors.length) {
          this.subs.delete(message.id);
          sub.error(fromGraphql(payload.errors[0]));
        } else {
          sub.next(payload.data);
        }
        break;
      }
      case 'error': {
        const sub = this.subs.get(message.id);
        this.subs.delete(message.id);
        if (sub) sub.error(fromGraphql(Array.isArray(message.payload) ? message.payload[0] : message.payload));
        break;
      }
      case 'complete': {
        const sub = this.subs.get(message.id);
        this.subs.delete(message.id);
        if (sub && sub.complete) sub.complete();
        break;
      }
      default:
        break;
    }
  }

  closedBy(code) {
    this.ready = false;
    if (this.closed) return;
    if (code === 4403) {
      this.closed = true;
      this.onStatus('offline');
      this.onSessionEnded();
      return;
    }
    // One-off subscriptions (an AI stream) cannot resume: they fail.
    for (const [id, sub] of this.subs) {
      if (sub.once) {
        this.subs.delete(id);
        sub.error(new ApiError('NETWORK', 'network'));
      }
    }
    this.onStatus('reconnecting');
    const delay = Math.min(30_000, 500 * 2 ** this.retry) * (0.5 + Math.random() / 2);
    this.retry += 1;
    this.timer = setTimeout(() => this.connect(), delay);
  }

  start(id, sub) {
    this.send({ id, type: 'subscribe', payload: { query: sub.query, variables: sub.variables } });
  }

  /**
   * Subscribes; returns a function that stops the subscription.
   * `once`: an operation that must not be re-run after a reconnect.
   */
  subscribe(query, variables, { next, error, complete, once = false }) {
    this.nextId += 1;
    const id = String(this.nextId);
    const sub = { query, variables, next, error: error || (() => {}), complete, once };
    this.subs.set(id, sub);
    if (this.ready) this.start(id, sub);
    return () => {
      if (this.subs.delete(id)) this.send({ id, type: 'complete' });
    };
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.subs.clear();
    if (this.ws) this.ws.close(1000);
  }
}
