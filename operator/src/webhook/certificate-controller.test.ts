import { describe, expect, test, vi } from 'vitest';
import type { SecretStore } from '../kube/secret-store.ts';
import { MemorySecretStore as MemoryStore } from '../kube/testing.ts';
import type { CaBundleTarget } from '../kube/webhook-tls.ts';
import { silentLogger } from '../log.ts';
import { CertificateController } from './certificate-controller.ts';
import { caBundle, decodeSecretData, type TlsPolicy } from './certificates.ts';
import type { ServingCertificate } from './server.ts';

const MIN = 60_000;
const policy: TlsPolicy = {
  caValidityMs: 60 * MIN,
  servingValidityMs: 20 * MIN,
  renewBeforeMs: 5 * MIN,
  overlapMs: 2 * MIN,
  dnsNames: ['webhook.ns.svc'],
};

class MemoryTarget implements CaBundleTarget {
  readonly description = 'MutatingWebhookConfiguration test';
  bundle: string | undefined;
  exists = true;
  injections = 0;
  async inject(bundle: string): Promise<'Injected' | 'Unchanged' | 'NotFound'> {
    if (!this.exists) return 'NotFound';
    if (this.bundle === bundle) return 'Unchanged';
    this.bundle = bundle;
    this.injections++;
    return 'Injected';
  }
}

function controller(
  store: SecretStore,
  target: CaBundleTarget | undefined,
  clock: { now: Date },
  p = policy,
) {
  const served: ServingCertificate[] = [];
  const c = new CertificateController({
    store,
    target,
    policy: p,
    serve: async (certificate) => {
      served.push(certificate);
    },
    logger: silentLogger(),
    checkMs: MIN,
    retryMs: 5_000,
    now: () => clock.now,
  });
  return { c, served };
}

const signal = new AbortController().signal;

describe('CertificateController', () => {
  test('two replicas starting together: one Secret is created, both serve it, the bundle goes in once', async () => {
    const store = new MemoryStore();
    const target = new MemoryTarget();
    const clock = { now: new Date('2026-11-30T12:00:00Z') };
    const a = controller(store, target, clock);
    const b = controller(store, target, clock);
    await Promise.all([a.c.sync(signal), b.c.sync(signal)]);
    expect(store.writes).toBe(1);
    const state = decodeSecretData(store.secret?.data);
    expect(a.served.at(-1)?.cert).toBe(state.serving.cert);
    expect(b.served.at(-1)?.cert).toBe(state.serving.cert);
    expect(target.bundle).toBe(caBundle(state));
    expect(target.injections).toBe(1);
    // Nothing due: a pass writes nothing and serves nothing new.
    await a.c.sync(signal);
    expect([store.writes, a.served.length]).toEqual([1, 1]);
  });

  test('renews the serving certificate when due, and the next pass of every replica serves the new one', async () => {
    const store = new MemoryStore();
    const clock = { now: new Date('2026-11-30T12:00:00Z') };
    const a = controller(store, undefined, clock);
    const b = controller(store, undefined, clock);
    await a.c.sync(signal);
    await b.c.sync(signal);
    const first = a.served.at(-1)?.cert;
    clock.now = new Date(clock.now.getTime() + 15 * MIN); // 4 min left of 19 (it started 1 min early)
    await a.c.sync(signal);
    await b.c.sync(signal);
    expect(store.writes).toBe(2);
    expect(a.served.at(-1)?.cert).not.toBe(first);
    expect(b.served.at(-1)?.cert).toBe(a.served.at(-1)?.cert);
  });

  test('the next pass comes when the next step is due, at most checkMs away', async () => {
    const store = new MemoryStore();
    const clock = { now: new Date('2026-11-30T12:00:00Z') };
    const a = controller(store, new MemoryTarget(), clock);
    expect(await a.c.sync(signal)).toBe(MIN);
    clock.now = new Date(clock.now.getTime() + 13 * MIN + 30_000); // renewal due in 30 s
    expect(await a.c.sync(signal)).toBe(30_000);
  });

  test('a configuration not there yet is looked for again soon, then less often; found, the bundle goes in', async () => {
    const target = new MemoryTarget();
    target.exists = false;
    const a = controller(new MemoryStore(), target, { now: new Date('2026-11-30T12:00:00Z') });
    const waits = [];
    for (let i = 0; i < 6; i++) waits.push(await a.c.sync(signal));
    // From retryMs, doubling, up to checkMs (1 min): an install without it is not polled every 5 s.
    expect(waits).toEqual([5_000, 10_000, 20_000, 40_000, MIN, MIN]);
    target.exists = true;
    expect(await a.c.sync(signal)).toBe(MIN);
    expect(target.injections).toBe(1);
    // Gone again (the configuration deleted and about to be re-applied): soon again.
    target.exists = false;
    expect(await a.c.sync(signal)).toBe(5_000);
  });

  test('an unusable Secret is replaced', async () => {
    const store = new MemoryStore();
    store.secret = { data: { 'tls.crt': Buffer.from('garbage').toString('base64') }, resourceVersion: '7' };
    const a = controller(store, undefined, { now: new Date('2026-11-30T12:00:00Z') });
    await a.c.sync(signal);
    expect(store.writes).toBe(1);
    expect(() => decodeSecretData(store.secret?.data)).not.toThrow();
  });

  test('lifetimes too short for their policy never become a write loop', async () => {
    const store = new MemoryStore();
    // A serving certificate starts 1 min before it is made: 70 s leave 10 s, less than the 30 s renewal margin.
    const tooShort = { ...policy, servingValidityMs: 70_000, renewBeforeMs: 30_000 };
    const a = controller(store, undefined, { now: new Date('2026-11-30T12:00:00Z') }, tooShort);
    expect(await a.c.sync(signal)).toBe(MIN);
    await a.c.sync(signal);
    expect(store.writes).toBe(1); // the creation, no renewal after renewal
    expect(a.served).toHaveLength(1); // what there is, is served
  });

  test('External (cert-manager): serves the Secret as it is and never writes it', async () => {
    const store = new MemoryStore();
    const clock = { now: new Date('2026-11-30T12:00:00Z') };
    const served: ServingCertificate[] = [];
    const external = new CertificateController({
      mode: 'External',
      store,
      target: undefined,
      policy,
      serve: async (c) => {
        served.push(c);
      },
      logger: silentLogger(),
      checkMs: MIN,
      retryMs: 5_000,
      now: () => clock.now,
    });
    expect(await external.sync(signal)).toBe(5_000); // no Secret yet: waits for it
    // What cert-manager writes: tls.crt, tls.key, ca.crt — no ca.key, no bundle.
    const made = controller(new MemoryStore(), undefined, clock);
    await made.c.sync(signal);
    const cert = made.served[0] as ServingCertificate;
    const b64 = (t: string) => Buffer.from(t).toString('base64');
    store.secret = {
      data: { 'tls.crt': b64(cert.cert), 'tls.key': b64(cert.key), 'ca.crt': b64('x') },
      resourceVersion: '1',
    };
    expect(await external.sync(signal)).toBe(MIN);
    expect(served).toEqual([cert]);
    expect(store.writes).toBe(0);
  });

  test('run ends, without an error, when the signal aborts during the wait for the next pass', async () => {
    const clock = { now: new Date('2026-11-30T12:00:00Z') };
    const { c, served } = controller(new MemoryStore(), undefined, clock);
    const stop = new AbortController();
    const running = c.run(stop.signal);
    await vi.waitFor(() => expect(served).toHaveLength(1)); // first pass done: now waiting checkMs
    stop.abort(new Error('stopping'));
    await expect(running).resolves.toBe(undefined);
  });
});
