import { describe, expect, test } from 'vitest';
import type { ObservedLatencyPolicy } from '../api/policy.ts';
import { silentLogger } from '../log.ts';
import { policySelects } from '../policy/match.ts';
import { container, deployment, observed, policy } from '../policy/test-fixtures.ts';
import type { LatencyObservation, ValidPolicy } from '../policy/types.ts';
import { EstimateCache } from './estimates.ts';
import { LatencyRefresher, probePaths, type RefresherView, refreshTargets } from './refresher.ts';
import type { LatencySource, Workload } from './source.ts';

const prometheusPolicy = policy('web-tier', {
  observedLatency: { source: 'Prometheus', minSamples: 10, stabilizationWindow: '1m' },
});

function view(
  deployments = [deployment({ name: 'a' }), deployment({ name: 'b' })],
  policies = [prometheusPolicy],
) {
  const state = { deployments, policies };
  const v: RefresherView & { state: typeof state } = {
    state,
    policies: () => state.policies,
    selectedBy: (name) => {
      const selecting = state.policies.find((p) => p.name === name);
      return selecting ? state.deployments.filter((d) => policySelects(selecting, d, {})) : [];
    },
    namespaceLabels: () => ({}),
    servicesIn: () => [],
  };
  return v;
}

/** A source whose answers the test scripts; it records concurrency and calls. */
class ScriptedSource implements LatencySource {
  answer: (w: Workload) => LatencyObservation | Promise<LatencyObservation> = () => observed(2);
  calls: string[] = [];
  running = 0;
  maxRunning = 0;
  delayMs = 0;
  async observe(w: Workload, _p: ObservedLatencyPolicy, signal?: AbortSignal): Promise<LatencyObservation> {
    this.calls.push(w.name);
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    try {
      if (this.delayMs > 0) {
        await new Promise((resolve, reject) => {
          const timer = setTimeout(resolve, this.delayMs);
          signal?.addEventListener('abort', () => {
            clearTimeout(timer);
            reject(new Error('aborted'));
          });
        });
      }
      return await this.answer(w);
    } finally {
      this.running--;
    }
  }
}

/** A source answering many workloads at once, but only those named `grouped-*`; the rest one by one. */
class GroupingSource extends ScriptedSource {
  batches: string[][] = [];
  failBatch = false;
  async observeMany(workloads: readonly Workload[]): Promise<Map<string, LatencyObservation>> {
    this.batches.push(workloads.map((w) => w.name));
    if (this.failBatch) throw new Error('batch failed');
    const answers = new Map<string, LatencyObservation>();
    for (const w of workloads)
      if (w.name.startsWith('grouped-')) answers.set(`${w.namespace}/${w.name}`, observed(3));
    return answers;
  }
}

function refresher(
  v: RefresherView,
  source: LatencySource,
  extra: { timeoutMs?: number; concurrency?: number } = {},
) {
  const cache = new EstimateCache();
  const changes: [string, string][] = [];
  const r = new LatencyRefresher({
    view: v,
    sources: { Prometheus: source },
    cache,
    intervalMs: 1000,
    timeoutMs: extra.timeoutMs ?? 1000,
    concurrency: extra.concurrency ?? 4,
    logger: silentLogger(),
  });
  r.changed.on((key, p) => changes.push([key, p]));
  return { r, cache, changes };
}

describe('refreshTargets', () => {
  test('only Deployments matched by a policy with a source; opted-out and None are left out', () => {
    const none = policy('none', { deploymentSelector: { matchLabels: { tier: 'batch' } } });
    const v = view(
      [
        deployment({ name: 'a' }),
        deployment({ name: 'opted', annotations: { 'gracefulshutdown.dev/exclude': 'true' } }),
      ],
      [prometheusPolicy, none],
    );
    const targets = refreshTargets(v, { Prometheus: new ScriptedSource() });
    expect(targets.map((t) => t.key)).toEqual(['shop/a']);
    expect(targets[0]?.workload).toMatchObject({
      namespace: 'shop',
      name: 'a',
      selector: { matchLabels: { app: 'a' } },
    });
    expect(refreshTargets(view(undefined, [policy('n')]), { Prometheus: new ScriptedSource() })).toEqual([]);
  });
});

describe('LatencyRefresher, grouped', () => {
  test('one grouped request per policy for all its Deployments; what it leaves unanswered is asked one by one', async () => {
    const source = new GroupingSource();
    const other = policy('other', {
      deploymentSelector: { matchLabels: { team: 'b' } },
      observedLatency: { source: 'Prometheus' },
      priority: 10,
    });
    const many = Array.from({ length: 50 }, (_, i) => deployment({ name: `grouped-${i}` }));
    const v = view(
      [...many, deployment({ name: 'single' }), deployment({ name: 'grouped-b', labels: { team: 'b' } })],
      [prometheusPolicy, other],
    );
    const { r, cache } = refresher(v, source);
    await r.refreshOnce(new AbortController().signal);
    expect(source.batches.map((b) => b.length).sort((x, y) => x - y)).toEqual([1, 51]);
    expect(source.calls).toEqual(['single']);
    expect(cache.keys()).toHaveLength(52);
    expect(cache.get('shop/grouped-7')?.published).toMatchObject({ known: true, seconds: 3 });
    expect(cache.get('shop/single')?.published).toMatchObject({ known: true, seconds: 2 });
  });

  test('a grouped request that fails leaves every Deployment to be asked on its own', async () => {
    const source = new GroupingSource();
    source.failBatch = true;
    const { r, cache } = refresher(
      view([deployment({ name: 'grouped-a' }), deployment({ name: 'b' })]),
      source,
    );
    await r.refreshOnce(new AbortController().signal);
    expect(source.calls.sort()).toEqual(['b', 'grouped-a']);
    expect(cache.keys().sort()).toEqual(['shop/b', 'shop/grouped-a']);
  });
});

describe('LatencyRefresher', () => {
  test('records each answer and wakes a Deployment only when its published estimate changed', async () => {
    const source = new ScriptedSource();
    const { r, cache, changes } = refresher(view(), source);
    const signal = new AbortController().signal;
    await r.refreshOnce(signal);
    expect(changes.sort()).toEqual([
      ['shop/a', 'web-tier'],
      ['shop/b', 'web-tier'],
    ]);
    expect(cache.get('shop/a')?.published).toMatchObject({ known: true, seconds: 2 });
    await r.refreshOnce(signal);
    expect(changes).toHaveLength(2);
    source.answer = (w) => (w.name === 'a' ? observed(9) : observed(2));
    await r.refreshOnce(signal);
    expect(changes.slice(2)).toEqual([['shop/a', 'web-tier']]);
  });

  test('never more than `concurrency` requests at once', async () => {
    const source = new ScriptedSource();
    source.delayMs = 20;
    const many = Array.from({ length: 9 }, (_, i) => deployment({ name: `d${i}` }));
    const { r } = refresher(view(many), source, { concurrency: 3 });
    await r.refreshOnce(new AbortController().signal);
    expect(source.calls).toHaveLength(9);
    expect(source.maxRunning).toBe(3);
  });

  test('a source that does not answer in time is unavailable; the last known estimate stays published', async () => {
    const source = new ScriptedSource();
    const { r, cache } = refresher(view([deployment({ name: 'a' })]), source, { timeoutMs: 50 });
    await r.refreshOnce(new AbortController().signal);
    source.delayMs = 5_000;
    await r.refreshOnce(new AbortController().signal);
    expect(cache.get('shop/a')).toMatchObject({
      published: { known: true, seconds: 2 },
      latest: { known: false, unavailable: true, reason: 'no answer within 50 ms' },
      stale: true,
    });
  });

  test('a source that throws counts as unavailable', async () => {
    const source = new ScriptedSource();
    source.answer = () => {
      throw new Error('boom');
    };
    const { r, cache } = refresher(view([deployment({ name: 'a' })]), source);
    await r.refreshOnce(new AbortController().signal);
    expect(cache.get('shop/a')?.latest).toMatchObject({ known: false, unavailable: true, reason: 'boom' });
  });

  test('single flight: a Deployment still being asked is not asked again', async () => {
    const source = new ScriptedSource();
    source.delayMs = 100;
    const { r } = refresher(view([deployment({ name: 'a' })]), source);
    const signal = new AbortController().signal;
    const first = r.refreshOnce(signal);
    await r.refreshOnce(signal);
    await first;
    expect(source.calls).toEqual(['a']);
  });

  test('estimates of Deployments gone or no longer selected are dropped', async () => {
    const source = new ScriptedSource();
    const v = view();
    const { r, cache } = refresher(v, source);
    await r.refreshOnce(new AbortController().signal);
    expect(cache.keys().sort()).toEqual(['shop/a', 'shop/b']);
    v.state.deployments = [deployment({ name: 'b' })];
    await r.refreshOnce(new AbortController().signal);
    expect(cache.keys()).toEqual(['shop/b']);
    v.state.policies = [] as ValidPolicy[];
    await r.refreshOnce(new AbortController().signal);
    expect(cache.keys()).toEqual([]);
  });

  test('run() refreshes on its interval and ends when its signal aborts', async () => {
    const source = new ScriptedSource();
    const { r } = refresher(view([deployment({ name: 'a' })]), source);
    const stop = new AbortController();
    const done = r.run(stop.signal);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(source.calls).toEqual(['a']);
    stop.abort();
    await done;
    expect(source.calls).toEqual(['a']);
  });

  test('nudge() starts the next pass now instead of at the end of the interval', async () => {
    const source = new ScriptedSource();
    const v = view([deployment({ name: 'a' })]);
    const { r } = refresher(v, source); // interval 1 s
    const stop = new AbortController();
    const done = r.run(stop.signal);
    await new Promise((resolve) => setTimeout(resolve, 50));
    v.state.deployments = [deployment({ name: 'a' }), deployment({ name: 'new' })];
    r.nudge();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(source.calls).toEqual(['a', 'a', 'new']);
    stop.abort();
    await done;
  });
});

describe('probePaths', () => {
  test("the httpGet paths of the containers' readiness, liveness and startup probes, once each", () => {
    const d = deployment({
      containers: [
        container('web', [8080], {
          readinessProbe: { httpGet: { path: '/readyz', port: 8080 } },
          livenessProbe: { httpGet: { path: '/healthz', port: 8080 } },
          startupProbe: { httpGet: { path: '/healthz', port: 8080 } },
        }),
        container('proxy', [9090], { readinessProbe: { tcpSocket: { port: 9090 } } }),
      ],
    });
    expect(probePaths(d)).toEqual(['/readyz', '/healthz']);
    expect(probePaths(deployment())).toEqual([]);
  });
});
