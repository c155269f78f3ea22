// Writes only while this replica holds the lease, checked right before each write. The abort
// signal of a reconcile follows the renew loop, which may run late (a process frozen or starved
// past its renew deadline finds out on its next attempt); this check does not wait for it.

/** A write held back because this replica does not hold the lease right now. */
export class NotLeaderError extends Error {
  constructor(operation: string) {
    super(`${operation}: not written, this replica does not hold the leader lease right now`);
    this.name = 'NotLeaderError';
  }
}

type AsyncMethods<W> = { [K in keyof W]: (...args: never[]) => Promise<unknown> };

/** The writer with every method refusing (NotLeaderError) unless `holdsLease()` right then. */
export function fenced<W extends AsyncMethods<W>>(writer: W, holdsLease: () => boolean): W {
  const guarded: Record<string, (...args: never[]) => Promise<unknown>> = {};
  for (const [name, method] of Object.entries<(...args: never[]) => Promise<unknown>>(writer)) {
    guarded[name] = (...args) => {
      if (!holdsLease()) return Promise.reject(new NotLeaderError(name));
      return method.apply(writer, args);
    };
  }
  return guarded as W;
}

/**
 * An event recorder (fire and forget) that drops what is recorded while this replica does not
 * hold the lease: a resumed old leader must not announce what the new one decides.
 */
export function fencedRecorder<R extends { record(...args: never[]): void }>(
  recorder: R,
  holdsLease: () => boolean,
): R {
  return {
    ...recorder,
    record: (...args: Parameters<R['record']>) => {
      if (holdsLease()) recorder.record(...args);
    },
  } as R;
}
