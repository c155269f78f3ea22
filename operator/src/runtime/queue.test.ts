import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createRuntimeMetrics } from './metrics.ts';
import {
  defaultControllerRateLimiter,
  ExponentialFailureRateLimiter,
  MaxOfRateLimiter,
  TokenBucketRateLimiter,
  WorkQueue,
} from './queue.ts';

/** Resolves what get() has handed out so far without waiting. */
async function settled<T>(promise: Promise<T>): Promise<T | 'pending'> {
  return Promise.race([promise, new Promise<'pending'>((resolve) => setImmediate(() => resolve('pending')))]);
}

describe('WorkQueue', () => {
  it('queues a key once however often it is added', async () => {
    const queue = new WorkQueue();
    queue.add('a');
    queue.add('a');
    queue.add('b');
    queue.add('a');
    expect(queue.len()).toBe(2);
    expect(await queue.get()).toBe('a');
    expect(await queue.get()).toBe('b');
    expect(await settled(queue.get())).toBe('pending');
  });

  it('never hands a key to a second worker while the first holds it', async () => {
    const queue = new WorkQueue();
    queue.add('a');
    expect(await queue.get()).toBe('a');
    queue.add('a');
    const second = queue.get();
    expect(await settled(second)).toBe('pending');
    queue.done('a');
    expect(await second).toBe('a');
  });

  it('re-queues a key once when it was added (several times) while being processed', async () => {
    const queue = new WorkQueue();
    queue.add('a');
    await queue.get();
    queue.add('a');
    queue.add('a');
    queue.add('a');
    expect(queue.len()).toBe(0);
    queue.done('a');
    expect(queue.len()).toBe(1);
    expect(await queue.get()).toBe('a');
    queue.done('a');
    expect(queue.len()).toBe(0);
  });

  it('a key added twice by one event while a worker waits is handed out once (client-go: taken when the worker runs)', async () => {
    const queue = new WorkQueue();
    const waiting = queue.get();
    queue.add('a'); // the event's first handler
    queue.add('a'); // its second: deduplicated, the key is still queued
    expect(await waiting).toBe('a');
    queue.done('a');
    // Negative control: added again once the worker holds it, it comes back after done.
    expect(queue.len()).toBe(0);
    const next = queue.get();
    queue.add('b');
    expect(await next).toBe('b');
    queue.add('b');
    queue.done('b');
    expect(queue.len()).toBe(1);
  });

  it('hands a key to a waiting worker as soon as it is added', async () => {
    const queue = new WorkQueue();
    const waiting = queue.get();
    queue.add('a');
    expect(await waiting).toBe('a');
  });

  describe('after shutDown', () => {
    it('wakes waiting workers with undefined', async () => {
      const queue = new WorkQueue();
      const idle = queue.get();
      queue.shutDown();
      expect(await idle).toBeUndefined();
    });

    it('hands out no queued key and ignores adds', async () => {
      const queue = new WorkQueue();
      queue.add('a');
      queue.shutDown();
      expect(await queue.get()).toBeUndefined();
      queue.add('b');
      expect(queue.len()).toBe(0);
    });

    it('drains: shutDownWithDrain resolves only once in-flight keys are done', async () => {
      const queue = new WorkQueue();
      queue.add('a');
      queue.add('b');
      await queue.get();
      await queue.get();
      const drained = queue.shutDownWithDrain();
      queue.done('a');
      expect(await settled(drained)).toBe('pending');
      queue.done('b');
      expect(await settled(drained)).toBeUndefined();
    });

    it('does not re-queue a key added while it was processed', async () => {
      const queue = new WorkQueue();
      queue.add('a');
      await queue.get();
      queue.add('a');
      queue.shutDown();
      queue.done('a');
      expect(queue.len()).toBe(0);
    });
  });

  describe('delays (fake timers)', () => {
    beforeEach(() => {
      vi.useFakeTimers();
    });
    afterEach(() => {
      vi.useRealTimers();
    });

    it('addAfter adds the key once the delay has passed', async () => {
      const queue = new WorkQueue();
      queue.addAfter('a', 1_000);
      await vi.advanceTimersByTimeAsync(999);
      expect(queue.len()).toBe(0);
      await vi.advanceTimersByTimeAsync(1);
      expect(queue.len()).toBe(1);
    });

    it('of two delays for one key the earlier wins, and the key is added once', async () => {
      const queue = new WorkQueue();
      queue.addAfter('a', 5_000);
      queue.addAfter('a', 1_000);
      queue.addAfter('a', 3_000);
      await vi.advanceTimersByTimeAsync(1_000);
      expect(queue.len()).toBe(1);
      await queue.get();
      queue.done('a');
      await vi.advanceTimersByTimeAsync(10_000);
      expect(queue.len()).toBe(0);
    });

    it('addRateLimited backs a key off exponentially and forget resets it', async () => {
      const queue = new WorkQueue({ rateLimiter: new ExponentialFailureRateLimiter({ baseDelayMs: 100 }) });
      const readyAfter = async (key: string): Promise<number> => {
        queue.addRateLimited(key);
        let waited = 0;
        while (queue.len() === 0) {
          await vi.advanceTimersByTimeAsync(10);
          waited += 10;
        }
        await queue.get();
        queue.done(key);
        return waited;
      };
      expect(await readyAfter('a')).toBe(100);
      expect(await readyAfter('a')).toBe(200);
      expect(await readyAfter('a')).toBe(400);
      expect(queue.numRequeues('a')).toBe(3);
      // Per key: another key starts from the base delay.
      expect(await readyAfter('b')).toBe(100);
      queue.forget('a');
      expect(queue.numRequeues('a')).toBe(0);
      expect(await readyAfter('a')).toBe(100);
    });

    it('the global token bucket bounds how many retries become ready per second', async () => {
      const queue = new WorkQueue({
        rateLimiter: defaultControllerRateLimiter({ baseDelayMs: 1, qps: 10, burst: 5 }),
      });
      for (let i = 0; i < 30; i++) queue.addRateLimited(`key-${i}`);
      await vi.advanceTimersByTimeAsync(1);
      expect(queue.len()).toBe(5);
      await vi.advanceTimersByTimeAsync(1_000);
      expect(queue.len()).toBe(15);
      await vi.advanceTimersByTimeAsync(1_500);
      expect(queue.len()).toBe(30);
    });

    it('shutDown cancels delayed adds', async () => {
      const queue = new WorkQueue();
      queue.addAfter('a', 100);
      queue.shutDown();
      await vi.advanceTimersByTimeAsync(1_000);
      expect(queue.len()).toBe(0);
    });
  });

  it('reports client-go metrics: adds (not deduplicated ones), depth, retries, durations', async () => {
    const metrics = createRuntimeMetrics({ defaultMetrics: false });
    const queue = new WorkQueue({ metrics: metrics.workQueue('deployment') });
    queue.add('a');
    queue.add('a');
    queue.add('b');
    queue.addAfter('c', 0);
    const key = await queue.get();
    const text = await metrics.registry.metrics();
    expect(text).toContain('workqueue_adds_total{name="deployment",controller="deployment"} 3');
    expect(text).toContain('workqueue_depth{name="deployment",controller="deployment",priority=""} 2');
    expect(text).toContain('workqueue_retries_total{name="deployment",controller="deployment"} 1');
    expect(text).toContain(
      'workqueue_queue_duration_seconds_count{name="deployment",controller="deployment"} 1',
    );
    expect(text).toMatch(
      /workqueue_longest_running_processor_seconds\{name="deployment",controller="deployment"\} \d/,
    );
    queue.done(key as string);
    expect(await metrics.registry.metrics()).toContain(
      'workqueue_work_duration_seconds_count{name="deployment",controller="deployment"} 1',
    );
  });
});

describe('rate limiters', () => {
  it('exponential: base doubling per failure up to the cap', () => {
    const limiter = new ExponentialFailureRateLimiter({ baseDelayMs: 5, maxDelayMs: 30 });
    expect([1, 2, 3, 4, 5].map(() => limiter.when('a'))).toEqual([5, 10, 20, 30, 30]);
  });

  it('token bucket: a burst passes, then one token per 1/qps', () => {
    let now = 0;
    const limiter = new TokenBucketRateLimiter({ qps: 10, burst: 2, now: () => now });
    expect([1, 2, 3, 4].map(() => limiter.when('x'))).toEqual([0, 0, 100, 200]);
    // The balance is -2; 350 ms refill 3.5 tokens: one is taken, half a token is left.
    now = 350;
    expect(limiter.when('x')).toBe(0);
    expect(limiter.when('x')).toBe(50);
  });

  it('max-of: the longer wait wins and every limiter counts the failure', () => {
    const exponential = new ExponentialFailureRateLimiter({ baseDelayMs: 50 });
    const limiter = new MaxOfRateLimiter(
      exponential,
      new TokenBucketRateLimiter({ qps: 1, burst: 1, now: () => 0 }),
    );
    expect(limiter.when('a')).toBe(50);
    expect(limiter.when('a')).toBe(1_000);
    expect(exponential.numRequeues('a')).toBe(2);
    expect(limiter.numRequeues('a')).toBe(2);
    limiter.forget('a');
    expect(limiter.numRequeues('a')).toBe(0);
  });
});
