// Credits are exact decimal strings ("12", "0.125", "-3.5"): they are
// formatted as text, never through a float.

/** "1234.5" -> "1,234.5"; "-3" -> "−3". */
export function credits(value) {
  if (value === null || value === undefined) return '—';
  let text = String(value);
  let sign = '';
  if (text.startsWith('-')) {
    sign = '−';
    text = text.slice(1);
  }
  const [whole, fraction] = text.split('.');
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return sign + grouped + (fraction ? `.${fraction}` : '');
}

/** A signed change: "+500", "−0.5", "0". */
export function delta(value) {
  const text = String(value ?? '0');
  if (text === '0') return '0';
  return text.startsWith('-') ? credits(text) : `+${credits(text)}`;
}

/** Whether a Credits string is zero. */
export function isZero(value) {
  return /^-?0*(\.0*)?$/.test(String(value ?? '0'));
}

/** The ratio of two Credits strings, for a progress bar only (0..1). */
export function ratio(part, whole) {
  const p = Number(part);
  const w = Number(whole);
  if (!(w > 0)) return 0;
  return Math.max(0, Math.min(1, p / w));
}

/** A price in the smallest unit of a currency. */
export function price(cents, currency) {
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency }).format(cents / 100);
  } catch {
    return `${(cents / 100).toFixed(2)} ${currency}`;
  }
}

export function dateTime(iso) {
  if (!iso) return '—';
  return new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function date(iso) {
  if (!iso) return '—';
  return new Date(iso).toLocaleDateString(undefined, { dateStyle: 'medium' });
}

/** "in 12 days", "in 3 hours", "in a few minutes". */
export function until(iso) {
  const ms = new Date(iso).getTime() - Date.now();
  if (ms <= 0) return 'now';
  const hours = ms / 3_600_000;
  if (hours >= 48) return `in ${Math.round(hours / 24)} days`;
  if (hours >= 2) return `in ${Math.round(hours)} hours`;
  return 'in less than two hours';
}

export const FEATURES = {
  CHAT: 'Chat',
  EXECUTIVE_ANALYSIS: 'Executive analysis',
  STANDUP_SYNTHESIS: 'Standup synthesis',
  AUTO_SCHEDULING: 'Auto-scheduling',
};

export const KINDS = {
  AI_USAGE: 'AI request',
  MONTHLY_ALLOCATION: 'Monthly allocation',
  MONTHLY_EXPIRY: 'Monthly credits expired',
  PURCHASE: 'Credits bought',
  GRANT: 'Credits granted',
  REFUND: 'Purchase refunded',
  ADJUSTMENT: 'Correction',
};

export const PURCHASE_STATUS = {
  PENDING: 'Waiting for payment',
  COMPLETED: 'Completed',
  FAILED: 'Failed',
  REFUNDED: 'Refunded',
};

export const REQUEST_STATUS = {
  SUCCEEDED: 'succeeded',
  FAILED: 'failed',
  CANCELLED: 'cancelled',
};

export function feature(f) {
  return FEATURES[f] || f || '';
}

export function billingMode(mode) {
  return mode === 'BYOK' ? 'your own key (BYOK)' : 'credits';
}

/** YYYY-MM-DD of a Date in local time, for <input type="date">. */
export function isoDay(d) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}
