import { Registry } from 'prom-client';
import { describe, expect, test } from 'vitest';
import type { WorkloadStatus } from '../api/policy.ts';
import type { ReportStore } from '../kube/reports.ts';
import { silentLogger } from '../log.ts';
import { createOperatorMetrics } from './metrics.ts';
import { PublishedStatuses, reportReconciler } from './report-controller.ts';

const verdict: WorkloadStatus = {
  namespace: 'shop',
  name: 'web',
  verdict: 'Compliant',
  message: 'ok',
} as WorkloadStatus;

function setup(store: Partial<ReportStore>) {
  const published = new PublishedStatuses();
  const reconcile = reportReconciler({
    published,
    store: {
      servedApi: async () => undefined,
      list: async () => [],
      apply: async () => {},
      delete: async () => {},
      ...store,
    },
    metrics: createOperatorMetrics(new Registry()),
    resyncMs: 60_000,
  });
  const publish = () =>
    published.publish({ name: 'p', uid: 'u' }, [verdict], new Map([['shop/web', 'd']]), new Date());
  const run = () => reconcile('p', new AbortController().signal, silentLogger());
  return { published, publish, run };
}

describe('report controller', () => {
  test('drops the verdicts once handled: written, or no report API served', async () => {
    const written = setup({ servedApi: async () => 'openreports' as const });
    written.publish();
    await written.run();
    expect(written.published.get('p')).toBeUndefined();

    const none = setup({});
    none.publish();
    expect(await none.run()).toEqual({ requeueAfterMs: 60_000 });
    expect(none.published.get('p')).toBeUndefined();
  });

  test('keeps them when a write fails (the retry needs them) and when a newer pass published meanwhile', async () => {
    const failing = setup({
      servedApi: async () => 'openreports' as const,
      apply: async () => {
        throw new Error('apiserver down');
      },
    });
    failing.publish();
    await expect(failing.run()).rejects.toThrow('apiserver down');
    expect(failing.published.get('p')).toBeDefined();

    const racing = setup({
      servedApi: async () => {
        racing.publish(); // a status pass lands while the report pass runs
        return undefined;
      },
    });
    racing.publish();
    const first = racing.published.get('p');
    await racing.run();
    expect(racing.published.get('p')).toBeDefined();
    expect(racing.published.get('p')).not.toBe(first);
  });
});
