import { Writable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../log.ts';
import { ConflictError, Controller, type Reconcile, TerminalError } from './controller.ts';
import { createRuntimeMetrics } from './metrics.ts';

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = () => {};
  const promise = new Promise<void>((done) => {
    resolve = done;
  });
  return { promise, resolve };
}

/** Lets queued microtasks and immediate callbacks run. */
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 1_000 && !condition(); i++) await tick();
  if (!condition()) throw new Error('condition never became true');
}

afterEach(() => {
  vi.useRealTimers();
});

describe('Controller', () => {
  it('lets the event loop run between reconciles that await nothing (a resync of thousands)', async () => {
    let reconciled = 0;
    const controller = new Controller({
      name: 'test',
      workers: 2,
      // Synchronous work of about 0.2 ms: nothing in it yields to the event loop.
      reconcile: async () => {
        const until = performance.now() + 0.2;
        while (performance.now() < until);
        reconciled++;
      },
    });
    for (let i = 0; i < 2_000; i++) controller.enqueue(`ns/d${i}`);
    controller.start();
    // What a timer, a watch event or a webhook request scheduled now would see when it runs.
    const seen = await new Promise<number>((resolve) => setImmediate(() => resolve(reconciled)));
    expect(seen).toBeLessThan(1_000);
    await until(() => reconciled === 2_000);
    await controller.stop();
  });

  it('runs at most `workers` reconciles at once and processes every key', async () => {
    let running = 0;
    let maxRunning = 0;
    const done: string[] = [];
    const gates: (() => void)[] = [];
    const controller = new Controller({
      name: 'test',
      workers: 3,
      reconcile: async (key) => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        const gate = deferred();
        gates.push(gate.resolve);
        await gate.promise;
        running--;
        done.push(key);
      },
    });
    // enqueue is bound: informer handlers receive it as a plain function.
    const { enqueue } = controller;
    for (let i = 0; i < 10; i++) enqueue(`ns/d${i}`);
    controller.start();
    while (done.length < 10) {
      await until(() => gates.length > 0);
      expect(running).toBeLessThanOrEqual(3);
      gates.shift()?.();
      await tick();
    }
    expect(maxRunning).toBe(3);
    expect(done.sort()).toEqual(Array.from({ length: 10 }, (_, i) => `ns/d${i}`).sort());
    await controller.stop();
  });

  it('never reconciles one key in two workers, and reconciles it once more if it changed meanwhile', async () => {
    const gate = deferred();
    const calls: string[] = [];
    let concurrentForKey = 0;
    let maxConcurrentForKey = 0;
    const controller = new Controller({
      name: 'test',
      workers: 4,
      reconcile: async (key) => {
        calls.push(key);
        concurrentForKey++;
        maxConcurrentForKey = Math.max(maxConcurrentForKey, concurrentForKey);
        if (calls.length === 1) await gate.promise;
        concurrentForKey--;
      },
    });
    controller.start();
    controller.enqueue('ns/a');
    await until(() => calls.length === 1);
    // Three events arrive while the first reconcile runs; idle workers must not take the key.
    controller.enqueue('ns/a');
    controller.enqueue('ns/a');
    controller.enqueue('ns/a');
    await tick();
    expect(calls).toHaveLength(1);
    gate.resolve();
    await until(() => calls.length === 2);
    await tick();
    expect(calls).toEqual(['ns/a', 'ns/a']);
    expect(maxConcurrentForKey).toBe(1);
    await controller.stop();
  });

  it('retries a failing key with growing backoff and forgets the failures on success', async () => {
    vi.useFakeTimers();
    const attempts: number[] = [];
    let failuresLeft = 3;
    const controller = new Controller({
      name: 'test',
      rateLimiter: { baseDelayMs: 1_000, qps: 1_000, burst: 1_000 },
      reconcile: async () => {
        attempts.push(Date.now());
        if (failuresLeft-- > 0) throw new Error('apiserver unavailable');
      },
    });
    const started = Date.now();
    controller.enqueue('ns/a');
    controller.start();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(attempts.map((at) => at - started)).toEqual([0, 1_000, 3_000, 7_000]);
    expect(controller.queue.numRequeues('ns/a')).toBe(0);
    await controller.stop();
  });

  it('does not retry a terminal error, also when it is the cause of another error', async () => {
    vi.useFakeTimers();
    let attempts = 0;
    const metrics = createRuntimeMetrics({ defaultMetrics: false });
    const controller = new Controller({
      name: 'test',
      metrics,
      reconcile: async (key) => {
        attempts++;
        if (key === 'ns/wrapped') throw new Error('outer', { cause: new TerminalError('invalid policy') });
        throw new TerminalError('invalid policy');
      },
    });
    controller.enqueue('ns/a');
    controller.enqueue('ns/wrapped');
    controller.start();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(attempts).toBe(2);
    const text = await metrics.registry.metrics();
    expect(text).toContain('controller_runtime_terminal_reconcile_errors_total{controller="test"} 2');
    expect(text).toContain('controller_runtime_reconcile_errors_total{controller="test"} 2');
    await controller.stop();
  });

  it('reconciles again after requeueAfterMs', async () => {
    vi.useFakeTimers();
    const attempts: number[] = [];
    const controller = new Controller({
      name: 'test',
      reconcile: async () => {
        attempts.push(Date.now());
        return attempts.length < 3 ? { requeueAfterMs: 30_000 } : undefined;
      },
    });
    const started = Date.now();
    controller.enqueue('ns/a');
    controller.start();
    await vi.advanceTimersByTimeAsync(120_000);
    expect(attempts.map((at) => at - started)).toEqual([0, 30_000, 60_000]);
    await controller.stop();
  });

  it('stop takes no new work and waits for in-flight reconciles', async () => {
    const gate = deferred();
    const reconciled: string[] = [];
    let finished = false;
    const controller = new Controller({
      name: 'test',
      reconcile: async (key) => {
        reconciled.push(key);
        await gate.promise;
        finished = true;
      },
    });
    controller.enqueue('ns/a');
    controller.enqueue('ns/b');
    controller.start();
    await until(() => reconciled.length === 1);
    let stopped = false;
    const stopping = controller.stop().then((drained) => {
      stopped = true;
      return drained;
    });
    await tick();
    expect(stopped).toBe(false);
    gate.resolve();
    expect(await stopping).toBe(true);
    expect(finished).toBe(true);
    expect(reconciled).toEqual(['ns/a']);
  });

  it('aborts the signal of reconciles still running after the grace period', async () => {
    vi.useFakeTimers();
    let aborted = false;
    const reconcile: Reconcile = (_key, signal) =>
      new Promise((resolve) => {
        signal.addEventListener('abort', () => {
          aborted = true;
          resolve();
        });
      });
    const controller = new Controller({ name: 'test', reconcile });
    controller.enqueue('ns/a');
    controller.start();
    await vi.advanceTimersByTimeAsync(0);
    const stopping = controller.stop({ graceMs: 5_000 });
    await vi.advanceTimersByTimeAsync(4_999);
    expect(aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(await stopping).toBe(false);
    expect(aborted).toBe(true);
  });

  it('after aborting, stop waits for the aborted reconciles to settle', async () => {
    vi.useFakeTimers();
    let settled = false;
    // An aborted reconcile whose HTTP request takes a while to settle.
    const reconcile: Reconcile = (_key, signal) =>
      new Promise((resolve) => {
        signal.addEventListener('abort', () =>
          setTimeout(() => {
            settled = true;
            resolve();
          }, 1_000),
        );
      });
    const controller = new Controller({ name: 'test', reconcile });
    controller.enqueue('ns/a');
    controller.start();
    await vi.advanceTimersByTimeAsync(0);
    let stopped = false;
    const stopping = controller.stop({ graceMs: 5_000 }).then((drained) => {
      stopped = true;
      return drained;
    });
    await vi.advanceTimersByTimeAsync(5_999);
    expect(stopped).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(await stopping).toBe(false);
    expect(settled).toBe(true);
  });

  it('counts reconciles by result in controller-runtime metrics', async () => {
    vi.useFakeTimers();
    const metrics = createRuntimeMetrics({ defaultMetrics: false });
    const controller = new Controller({
      name: 'deployment',
      workers: 2,
      metrics,
      reconcile: async (key) => {
        if (key === 'ns/error') throw new Error('boom');
        if (key === 'ns/later') return { requeueAfterMs: 60_000 };
      },
    });
    controller.enqueue('ns/ok');
    controller.enqueue('ns/error');
    controller.enqueue('ns/later');
    controller.start();
    await vi.advanceTimersByTimeAsync(1);
    const text = await metrics.registry.metrics();
    expect(text).toContain('controller_runtime_reconcile_total{controller="deployment",result="success"} 1');
    expect(text).toContain('controller_runtime_reconcile_total{controller="deployment",result="error"} 1');
    expect(text).toContain(
      'controller_runtime_reconcile_total{controller="deployment",result="requeue_after"} 1',
    );
    expect(text).toContain('controller_runtime_reconcile_total{controller="deployment",result="requeue"} 0');
    expect(text).toContain('controller_runtime_reconcile_errors_total{controller="deployment"} 1');
    expect(text).toContain('controller_runtime_reconcile_time_seconds_count{controller="deployment"} 3');
    expect(text).toContain('controller_runtime_max_concurrent_reconciles{controller="deployment"} 2');
    expect(text).toContain('controller_runtime_active_workers{controller="deployment"} 0');
    await controller.stop();
  });

  it('retries a ConflictError (also as a cause) with backoff and logs it at info, not error', async () => {
    const lines: Record<string, unknown>[] = [];
    const destination = new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
        done();
      },
    });
    let attempts = 0;
    const controller = new Controller({
      name: 'status',
      logger: createLogger({ level: 'info', destination }),
      rateLimiter: { baseDelayMs: 0 },
      reconcile: async () => {
        attempts++;
        if (attempts === 1) throw new ConflictError('the object has been modified');
        if (attempts === 2) throw new Error('writing status', { cause: new ConflictError('again') });
      },
    });
    controller.enqueue('web');
    controller.start();
    await until(() => attempts === 3);
    await controller.stop();
    const conflicts = lines.filter((line) => String(line.msg).startsWith('Conflict'));
    expect(conflicts.map((line) => line.level)).toEqual(['info', 'info']);
    expect(conflicts.map((line) => line.retries)).toEqual([1, 2]);
    expect(lines.filter((line) => line.level === 'error')).toEqual([]);
  });

  it('logs JSON lines carrying the controller name and the object key', async () => {
    const lines: Record<string, unknown>[] = [];
    const destination = new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
        done();
      },
    });
    const logger = createLogger({ level: 'info', destination });
    const controller = new Controller({
      name: 'deployment',
      logger,
      reconcile: async (_key, _signal, log) => {
        log.info('applying');
        throw new Error('apiserver unavailable');
      },
    });
    controller.enqueue('shop/web');
    controller.start();
    await until(() => lines.some((line) => line.msg === 'Reconciler error'));
    await controller.stop();
    const applying = lines.find((line) => line.msg === 'applying');
    const failure = lines.find((line) => line.msg === 'Reconciler error');
    expect(applying).toMatchObject({ level: 'info', controller: 'deployment', key: 'shop/web' });
    expect(failure).toMatchObject({ level: 'error', controller: 'deployment', key: 'shop/web' });
    expect(failure?.reconcileID).toBe(applying?.reconcileID);
    expect(failure?.err).toMatchObject({ message: 'apiserver unavailable' });
    expect(typeof failure?.time).toBe('string');
  });
});
