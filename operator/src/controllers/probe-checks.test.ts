import { describe, expect, test } from 'vitest';
import { deployment } from '../policy/test-fixtures.ts';
import type { ProbeVerdict, ProbeVerifier, VerifyInput } from '../probes/verifier.ts';
import { type ProbeCheckRequest, ProbeChecks } from './probe-checks.ts';

/** A verifier whose checks end when the test says so. */
function stubVerifier() {
  const started: { key: string; finish: (verdict: ProbeVerdict) => void }[] = [];
  const verifier = {
    verify: (input: VerifyInput) =>
      new Promise<ProbeVerdict>((resolve, reject) => {
        input.signal?.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
        started.push({
          key: `${input.deployment.metadata?.namespace}/${input.deployment.metadata?.name}`,
          finish: resolve,
        });
      }),
  } as unknown as ProbeVerifier;
  return { verifier, started };
}

const request = (namespace: string, name: string): ProbeCheckRequest => ({
  key: `${namespace}/${name}`,
  deployment: deployment({ namespace, name }),
  pods: [],
  probes: [{ container: 'web', path: '/readyz', port: 8080 }],
  joining: false,
});

const VERIFIED: ProbeVerdict = { state: 'Verified', tried: 'GET /readyz' };
const tick = () => new Promise((resolve) => setImmediate(resolve));

function started(total = 3, perNamespace = 1) {
  const { verifier, started: running } = stubVerifier();
  const done: [string, boolean][] = [];
  const counts: { running: number; queued: number }[] = [];
  const checks = new ProbeChecks({
    verifier,
    total,
    perNamespace,
    onCounts: (c) => counts.push(c),
  });
  checks.done.on((key, pending) => done.push([key, pending]));
  const stop = new AbortController();
  const runDone = checks.run(stop.signal);
  return { checks, running, done, counts, stop, runDone };
}

describe('ProbeChecks', () => {
  test('one namespace with many slow Deployments cannot take every slot: the others still get theirs', async () => {
    const h = started(3, 1);
    for (let i = 0; i < 10; i++) h.checks.request(request('tenant-a', `slow-${i}`));
    h.checks.request(request('tenant-b', 'web'));
    h.checks.request(request('tenant-c', 'api'));
    await tick();
    // tenant-a has one running, the other two namespaces one each: the total of 3.
    expect(h.running.map((r) => r.key)).toEqual(['tenant-a/slow-0', 'tenant-b/web', 'tenant-c/api']);
    expect(h.counts.at(-1)).toEqual({ running: 3, queued: 9 });
    h.running[1]?.finish(VERIFIED);
    h.running[2]?.finish(VERIFIED);
    await tick();
    expect(h.done).toEqual([
      ['tenant-b/web', false],
      ['tenant-c/api', false],
    ]);
    // Freed slots go to tenant-a only one at a time (its limit), never two at once.
    expect(h.running.map((r) => r.key)).toEqual(['tenant-a/slow-0', 'tenant-b/web', 'tenant-c/api']);
    h.stop.abort();
    await h.runDone;
  });

  test('a Deployment already queued or running is not checked twice; a pending verdict says so', async () => {
    const h = started();
    expect(h.checks.request(request('shop', 'web'))).toBe(true);
    expect(h.checks.request(request('shop', 'web'))).toBe(true);
    await tick();
    expect(h.running).toHaveLength(1);
    h.running[0]?.finish({ state: 'Pending', message: 'young' });
    await h.checks.idle();
    expect(h.done).toEqual([['shop/web', true]]);
    h.stop.abort();
    await h.runDone;
  });

  test('stopped (leadership lost): queued checks dropped, running ones aborted, nothing reported, no new requests', async () => {
    const h = started(1, 1);
    h.checks.request(request('a', 'x'));
    h.checks.request(request('b', 'y'));
    await tick();
    h.stop.abort();
    await h.runDone;
    await h.checks.idle();
    expect(h.done).toEqual([]);
    expect(h.checks.pending).toBe(0);
    expect(h.checks.request(request('c', 'z'))).toBe(false);
  });
});
