// What every view shares: the caller, their wallet (kept live by
// walletUpdated), new activity entries (activityAdded), and the realtime
// connection.

export const WALLET_FIELDS =
  'id version monthlyBalance monthlyAllocation permanentBalance held available cycleStart cycleEnd billingMode';

export const ENTRY_FIELDS =
  'id at kind feature billingMode status provider model inputTokens outputTokens creditsConsumed monthlyDelta permanentDelta balanceAfter description';

export const store = {
  me: null,
  wallet: null,
  realtime: null,
};

const walletListeners = new Set();
const entryListeners = new Set();

/** Calls `fn(wallet)` on each wallet change; returns the unsubscribe. */
export function onWallet(fn) {
  walletListeners.add(fn);
  return () => walletListeners.delete(fn);
}

export function onEntry(fn) {
  entryListeners.add(fn);
  return () => entryListeners.delete(fn);
}

/** A newer wallet replaces the one kept (events may race a query). */
export function setWallet(wallet) {
  if (!wallet) return;
  if (store.wallet && store.wallet.version > wallet.version) return;
  store.wallet = wallet;
  for (const fn of walletListeners) fn(wallet);
}

export function addEntry(entry) {
  for (const fn of entryListeners) fn(entry);
}
