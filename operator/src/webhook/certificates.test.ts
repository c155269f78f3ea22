import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { describe, expect, test } from 'vitest';
import {
  applyRotation,
  BACKDATE_MS,
  caBundle,
  createCA,
  decodeSecretData,
  encodeSecretData,
  issueServingCert,
  type RotationPlan,
  rotationPlan,
  SECRET_KEYS,
  serviceDnsNames,
  type TlsPolicy,
  TlsSecretError,
  verifyChain,
  type WebhookTlsState,
} from './certificates.ts';

const MIN = 60_000;
const dnsNames = serviceDnsNames('gso-webhook', 'gso-system');
const host = 'gso-webhook.gso-system.svc';
const policy: TlsPolicy = {
  caValidityMs: 60 * MIN,
  servingValidityMs: 20 * MIN,
  renewBeforeMs: 5 * MIN,
  overlapMs: 2 * MIN,
  dnsNames,
};
const start = new Date('2030-01-01T00:00:00Z');
const at = (minutes: number) => new Date(start.getTime() + minutes * MIN);
const minutesOf = (date: Date) => (date.getTime() - start.getTime()) / MIN;

async function created(now = start): Promise<WebhookTlsState> {
  return applyRotation(undefined, { action: 'Create', reason: 'test' }, now, policy);
}

async function expectVerifies(servingCert: string, bundle: string, when: Date, what: string) {
  const result = await verifyChain(servingCert, bundle, { at: when, dnsName: host });
  expect(result, `${what} at ${minutesOf(when)} min`).toEqual({ ok: true });
}

describe('certificates', () => {
  test('serviceDnsNames: the names the apiserver uses for a Service', () => {
    expect(serviceDnsNames('wh', 'ns')).toEqual(['wh', 'wh.ns', 'wh.ns.svc']);
  });

  test('a created state: the serving certificate verifies against the bundle for every Service name', async () => {
    const state = await created();
    const bundle = caBundle(state);
    for (const dnsName of dnsNames) {
      expect(await verifyChain(state.serving.cert, bundle, { at: at(1), dnsName })).toEqual({ ok: true });
    }
    expect(await verifyChain(state.serving.cert, bundle, { at: at(1), dnsName: 'other.svc' })).toMatchObject({
      ok: false,
    });
    expect(await verifyChain(state.serving.cert, bundle, { at: at(30), dnsName: host })).toMatchObject({
      ok: false,
      reason: expect.stringContaining('is valid'),
    });
    const stranger = await createCA({ commonName: 'stranger', notBefore: start, validityMs: 60 * MIN });
    expect(await verifyChain(state.serving.cert, stranger.cert, { at: at(1) })).toMatchObject({ ok: false });

    const ca = new x509.X509Certificate(state.ca.cert);
    expect(ca.getExtension(x509.BasicConstraintsExtension)?.ca).toBe(true);
    const caUsages = ca.getExtension(x509.KeyUsagesExtension)?.usages ?? 0;
    expect(caUsages & x509.KeyUsageFlags.keyCertSign).toBeTruthy();
    expect(ca.notAfter.getTime() - ca.notBefore.getTime()).toBe(policy.caValidityMs);

    const leaf = new x509.X509Certificate(state.serving.cert);
    expect(leaf.getExtension(x509.BasicConstraintsExtension)?.ca).toBe(false);
    expect(leaf.getExtension(x509.ExtendedKeyUsageExtension)?.usages).toEqual([
      x509.ExtendedKeyUsage.serverAuth,
    ]);
    const san = leaf.getExtension(x509.SubjectAlternativeNameExtension)?.names.items.map((n) => n.value);
    expect(san).toEqual(dnsNames);
    expect(leaf.notBefore.getTime()).toBe(start.getTime() - BACKDATE_MS);
    expect(state.serving.key).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(state.ca.key).toMatch(/^-----BEGIN PRIVATE KEY-----/);
  });

  test('a serving certificate never outlives its CA', async () => {
    const ca = await createCA({ commonName: 'short', notBefore: start, validityMs: 10 * MIN });
    const serving = await issueServingCert({ ca, dnsNames, notBefore: start, validityMs: 60 * MIN });
    expect(new x509.X509Certificate(serving.cert).notAfter).toEqual(at(10));
  });

  test('Node completes a TLS handshake with the PEM key and certificate, trusting only the bundle', async () => {
    const state = await created(new Date());
    const server = tls.createServer({ cert: state.serving.cert, key: state.serving.key }, (socket) =>
      socket.end('ok'),
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const { port } = server.address() as AddressInfo;
      const socket = tls.connect({ host: '127.0.0.1', port, servername: host, ca: caBundle(state) });
      await once(socket, 'secureConnect');
      expect(socket.authorized).toBe(true);
      socket.destroy();
    } finally {
      server.close();
    }
  });

  test('time travel through two CA rotations: no step breaks a consumer up to one overlap behind', async () => {
    let now = start;
    let state: WebhookTlsState | undefined;
    const steps: string[] = [];
    // Every published state and when it was replaced: an apiserver may keep a caBundle, and a
    // replica a serving certificate, for up to `overlapMs` after it was replaced.
    const history: { state: WebhookTlsState; replacedAt?: Date }[] = [];
    while (minutesOf(now) <= 110) {
      let plan: RotationPlan;
      for (let i = 0; ; i++) {
        expect(i, 'steps at one instant').toBeLessThan(3);
        plan = rotationPlan(state, now, policy);
        if (plan.action === 'None') break;
        state = await applyRotation(state, plan, now, policy);
        steps.push(`${minutesOf(now)} ${plan.action}`);
        const last = history.at(-1);
        if (last) last.replacedAt = now;
        const lagging = history.filter(
          (h) => h.replacedAt && h.replacedAt.getTime() > now.getTime() - policy.overlapMs,
        );
        history.push({ state });
        const what = `${minutesOf(now)} ${plan.action}`;
        await expectVerifies(state.serving.cert, caBundle(state), now, `${what}: served vs its bundle`);
        for (const { state: old } of lagging) {
          await expectVerifies(
            state.serving.cert,
            caBundle(old),
            now,
            `${what}: served vs a lagging caBundle`,
          );
          await expectVerifies(
            old.serving.cert,
            caBundle(state),
            now,
            `${what}: a lagging replica vs the bundle`,
          );
        }
      }
      if (!state) throw new Error('no state');
      expect(plan.nextCheckAt.getTime()).toBeGreaterThan(now.getTime());
      // Until the next check, what is served keeps verifying against what is published.
      await expectVerifies(
        state.serving.cert,
        caBundle(state),
        plan.nextCheckAt,
        'served until the next check',
      );
      now = plan.nextCheckAt;
    }
    // CA 1 h, serving 20 min, renew 5 min before, overlap 2 min; certificates start 1 min early.
    expect(steps).toEqual([
      '0 Create',
      '14 RenewServing',
      '28 RenewServing',
      '42 RenewServing', // capped at the CA's end (59)
      '52 RotateCA', // the CA has 7 min (renewBefore + overlap) left: the new one is published
      '54 RenewServing', // overlap over: served from the new CA, the old one still has 5 min
      '56 DropOldCA', // every replica has served from the new CA for the overlap
      '68 RenewServing',
      '82 RenewServing',
      '96 RenewServing',
      '104 RotateCA',
      '106 RenewServing',
      '108 DropOldCA',
    ]);
  });

  test('the bundle carries the new CA first and keeps the old one until DropOldCA', async () => {
    const first = await created();
    // As at 52 min in the timeline above: the last renewal (at 42) ends with the CA, at 59.
    const serving = await issueServingCert({
      ca: first.ca,
      dnsNames,
      notBefore: at(41),
      validityMs: 20 * MIN,
    });
    const initial = { ...first, serving };
    expect(rotationPlan(initial, at(52), policy).action).toBe('RotateCA');
    const rotated = await applyRotation(initial, { action: 'RotateCA', reason: 'test' }, at(52), policy);
    expect(caBundle(rotated)).toBe(`${rotated.ca.cert.trim()}\n${initial.ca.cert.trim()}\n`);
    expect(rotated.serving).toEqual(initial.serving);
    expect(rotationPlan(rotated, at(53.9), policy)).toEqual({ action: 'None', nextCheckAt: at(54) });
    expect(rotationPlan(rotated, at(54), policy).action).toBe('RenewServing');
    const switched = await applyRotation(rotated, rotationPlan(rotated, at(54), policy), at(54), policy);
    expect(switched.rotation?.servingSwitchedAt).toEqual(at(54));
    expect(rotationPlan(switched, at(55.9), policy)).toEqual({ action: 'None', nextCheckAt: at(56) });
    expect(await verifyChain(switched.serving.cert, initial.ca.cert, { at: at(55) })).toMatchObject({
      ok: false,
    });
    const dropped = await applyRotation(switched, rotationPlan(switched, at(56), policy), at(56), policy);
    expect(caBundle(dropped)).toBe(`${rotated.ca.cert.trim()}\n`);
    expect(dropped.rotation).toBeUndefined();
  });

  test('a serving certificate that would need renewing during the overlap is extended first', async () => {
    const ca = await createCA({ commonName: 'a', notBefore: start, validityMs: 60 * MIN });
    const serving = await issueServingCert({ ca, dnsNames, notBefore: at(39), validityMs: 20 * MIN }); // ends 59
    const state: WebhookTlsState = { ca, serving };
    expect(rotationPlan(state, at(53), policy)).toMatchObject({
      action: 'RenewServing',
      reason: expect.stringContaining('CA rotation is due'),
    });
    const extended = await applyRotation(state, rotationPlan(state, at(53), policy), at(53), policy);
    expect(new x509.X509Certificate(extended.serving.cert).notAfter).toEqual(at(60));
    expect(rotationPlan(extended, at(53), policy).action).toBe('RotateCA');
  });

  test('late: an old serving certificate that ends within the overlap is replaced at once; an expired CA is recreated', async () => {
    const initial = await created(); // CA and serving from -1 min
    const serving = await issueServingCert({
      ca: initial.ca,
      dnsNames,
      notBefore: at(40),
      validityMs: 60 * MIN,
    });
    // The operator was down: the CA has 2 min left when it rotates.
    const late = await applyRotation(
      { ...initial, serving },
      { action: 'RotateCA', reason: 'test' },
      at(57),
      policy,
    );
    expect(rotationPlan(late, at(57), policy)).toMatchObject({
      action: 'RenewServing',
      reason: expect.stringContaining('late rotation'),
    });
    expect(rotationPlan(initial, at(59), policy)).toMatchObject({
      action: 'Create',
      reason: expect.stringContaining('expired'),
    });
    expect(rotationPlan(undefined, start, policy)).toMatchObject({ action: 'Create' });
  });

  test('a serving certificate that does not cover the Service names is reissued', async () => {
    const state = await created();
    const renamed = { ...policy, dnsNames: serviceDnsNames('renamed', 'gso-system') };
    expect(rotationPlan(state, at(1), renamed)).toMatchObject({
      action: 'RenewServing',
      reason: expect.stringContaining('renamed.gso-system.svc'),
    });
    expect(rotationPlan(state, at(1), policy)).toEqual({ action: 'None', nextCheckAt: at(14) });
  });

  test('a policy whose rotation cannot fit is refused', () => {
    expect(() => rotationPlan(undefined, start, { ...policy, overlapMs: 30 * MIN })).toThrow(/must fit/);
    expect(() => rotationPlan(undefined, start, { ...policy, renewBeforeMs: 20 * MIN })).toThrow(/shorter/);
  });
});

describe('the Secret', () => {
  test('decode(encode(state)) round-trips, also in the middle of a rotation', async () => {
    const steady = await created();
    const rotated = await applyRotation(steady, { action: 'RotateCA', reason: 'test' }, at(52), policy);
    const switched = await applyRotation(rotated, { action: 'RenewServing', reason: 'test' }, at(54), policy);
    for (const state of [steady, rotated, switched]) {
      const data = encodeSecretData(state);
      expect(decodeSecretData(data)).toEqual(state);
      expect(Buffer.from(data[SECRET_KEYS.bundle] ?? '', 'base64').toString()).toBe(caBundle(state));
    }
    expect(Object.keys(encodeSecretData(steady)).sort()).toEqual([
      'ca-bundle.crt',
      'ca.crt',
      'ca.key',
      'tls.crt',
      'tls.key',
    ]);
    expect(Object.keys(encodeSecretData(switched))).toEqual(
      expect.arrayContaining(['ca-rotated-at', 'serving-switched-at']),
    );
  });

  test('a missing or unparsable key is named in the error', async () => {
    const data = encodeSecretData(await created());
    const without = (key: string) => Object.fromEntries(Object.entries(data).filter(([k]) => k !== key));
    const decodeError = (input: Record<string, string> | undefined) => {
      try {
        decodeSecretData(input);
      } catch (error) {
        return error;
      }
      throw new Error('decoded');
    };
    expect(decodeError(without('tls.key'))).toBeInstanceOf(TlsSecretError);
    expect(decodeError(without('tls.key'))).toMatchObject({
      key: 'tls.key',
      message: expect.stringContaining('tls.key'),
    });
    const garbage = Buffer.from('not a certificate').toString('base64');
    expect(decodeError({ ...data, 'ca.crt': garbage })).toMatchObject({ key: 'ca.crt' });
    expect(decodeError({ ...data, 'ca.key': data['ca.crt'] ?? '' })).toMatchObject({ key: 'ca.key' });
    expect(decodeError({ ...data, 'ca-bundle.crt': data['tls.crt'] ?? '' })).toMatchObject({
      key: 'ca-bundle.crt',
    });
    expect(decodeError(undefined)).toMatchObject({ key: 'ca.crt' });

    const rotated = encodeSecretData(
      await applyRotation(decodeSecretData(data), { action: 'RotateCA', reason: 'test' }, at(52), policy),
    );
    const { 'ca-rotated-at': _, ...noTimestamp } = rotated;
    expect(decodeError(noTimestamp)).toMatchObject({ key: 'ca-rotated-at' });
    expect(
      decodeError({ ...rotated, 'ca-rotated-at': Buffer.from('soon').toString('base64') }),
    ).toMatchObject({
      key: 'ca-rotated-at',
    });
  });
});
