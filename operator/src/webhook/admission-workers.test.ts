// The admission worker thread, for real (node:worker_threads running webhook/admission-worker.ts):
// the decision is the same as in-thread, and the main thread never parses a review's body.
import { afterEach, describe, expect, test, vi } from 'vitest';
import { EstimateCache } from '../latency/estimates.ts';
import { deployment, NEW_CLUSTER, policy } from '../policy/test-fixtures.ts';
import type { AdmissionSources } from './admission-snapshot.ts';
import { AdmissionWorkers } from './admission-workers.ts';

const enforce = policy('web-tier', { mode: 'Enforce' });

function sources(extra: Partial<AdmissionSources> = {}): AdmissionSources {
  return {
    ready: () => true,
    policies: () => ({ valid: [enforce], invalid: new Map() }),
    namespaceLabels: () => ({}),
    estimates: new EstimateCache(),
    facts: NEW_CLUSTER,
    breakerOpen: () => false,
    ...extra,
  };
}

function review(filler = ''): Buffer {
  const object = deployment({ name: 'web', namespace: 'shop' });
  object.status = undefined;
  object.metadata = { ...object.metadata, uid: undefined, annotations: filler ? { filler } : {} };
  return Buffer.from(
    JSON.stringify({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: {
        uid: 'req-1',
        kind: { group: 'apps', version: 'v1', kind: 'Deployment' },
        operation: 'CREATE',
        namespace: 'shop',
        object,
      },
    }),
  );
}

const workers: AdmissionWorkers[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(workers.splice(0).map((w) => w.close()));
});

function started(extra: Partial<AdmissionSources> = {}) {
  const w = new AdmissionWorkers({ sources: sources(extra), recordKey: Buffer.alloc(32, 7) });
  workers.push(w);
  return w;
}

describe('AdmissionWorkers (a real worker thread)', () => {
  test('decides as admit() does: allowed, a JSON patch, the outcome for the metric', async () => {
    const answer = await started().decide(review());
    expect(answer).toMatchObject({ status: 200, outcome: 'Mutated', operation: 'CREATE' });
    if (answer.status !== 200) throw new Error('no answer');
    const response = (answer.review as { response: { uid: string; allowed: boolean; patch?: string } })
      .response;
    expect(response).toMatchObject({ uid: 'req-1', allowed: true });
    const patch = JSON.parse(Buffer.from(response.patch ?? '', 'base64').toString()) as { path: string }[];
    expect(patch.map((op) => op.path)).toContain('/spec/template/spec/containers/0/readinessProbe');
  });

  test('a maximum-size review is parsed in the worker, never on the main thread', async () => {
    const parse = vi.spyOn(JSON, 'parse');
    const body = review('x'.repeat(3 * 1024 * 1024));
    const answer = await started().decide(body);
    expect(answer).toMatchObject({ status: 200, outcome: 'Mutated' });
    const large = parse.mock.calls.filter(([text]) => typeof text === 'string' && text.length > 1024 * 1024);
    expect(large).toEqual([]);
  });

  test('not JSON: 400; caches not synced: allowed unchanged (NotSynced)', async () => {
    expect(await started().decide(Buffer.from('{nope'))).toMatchObject({ status: 400 });
    expect(await started({ ready: () => false }).decide(review())).toMatchObject({
      status: 200,
      outcome: 'NotSynced',
    });
  });

  test('closed: a decision in flight is rejected (the server answers 500, the apiserver admits)', async () => {
    const w = started();
    const rejected = expect(w.decide(review())).rejects.toThrow(/closed/);
    await w.close();
    await rejected;
  });
});
