/**
 * Resolves after `ms`, or at once when `signal` aborts. The abort listener is removed when the timer fires: a replay
 * sleeps once per volume on one long-lived signal, and listeners left behind leak (Node warns past 10).
 */
export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (ms <= 0 || signal?.aborted) return resolve();
    const onAbort = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
