// Polling, for tests, the demo and the cluster tooling alike (no vitest here).
import { setTimeout as sleep } from 'node:timers/promises';

/** Polls until `check` returns a value other than undefined/false, or fails naming what it awaited. */
export async function waitFor<T>(
  description: string,
  check: () => Promise<T | undefined | false>,
  opts: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    await sleep(opts.intervalMs ?? 250);
  }
  throw new Error(
    `timed out waiting for ${description}${lastError ? `: ${(lastError as Error).message}` : ''}`,
  );
}
