// The admission webhook's own TLS (issue 11; not wired into main.ts yet): a CA and a serving
// certificate kept in one Secret, and the pure decision of what to do next. No I/O here: a
// later change reads and writes the Secret and patches the webhook configuration's caBundle.
// Why our own CA and not cert-manager: docs/design/webhook-tls.md.
//
// Rotation timeline (as Kyverno and cert-manager's CA injector: the old CA stays in the bundle
// until the new one is everywhere). C = caValidityMs, R = renewBeforeMs, O = overlapMs; the
// bundle is what the apiserver trusts (caBundle), "served" what every replica presents.
//
//   time                      bundle       served        step
//   created                   [A]          leaf(A)       Create
//   leaf has < R left         [A]          leaf'(A)      RenewServing (as often as needed)
//   A has < R + O left        [B, A]       leaf(A)       RotateCA: B is published, not used
//   RotateCA + O              [B, A]       leaf(B)       RenewServing: every consumer has B
//   switch + O                [B]          leaf(B)       DropOldCA: every replica serves leaf(B)
//
// Each step changes one thing, so a consumer that is one step behind (an apiserver with the
// previous caBundle, a replica still serving the previous certificate) still completes the
// handshake. The switch to B happens with R still left on A: the same margin a serving
// renewal has. A leaf never outlives its CA (its notAfter is capped at the CA's), and a leaf
// that would need renewing during the overlap is first extended to its CA's end, so the
// overlap never has to be cut short.
import type { webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import 'reflect-metadata'; // @peculiar/x509's dependency injection needs the Reflect polyfill.
import * as x509 from '@peculiar/x509';
import { LRUCache } from 'lru-cache';

// Node's WebCrypto, typed by @types/node rather than the DOM lib x509 expects.
x509.cryptoProvider.set(globalThis.crypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
/** Certificates start this much before they are made: an apiserver whose clock is a little behind accepts them. */
export const BACKDATE_MS = 60_000;
export const DEFAULT_CA_COMMON_NAME = 'graceful-shutdown-operator-webhook-ca';

/** A PEM certificate and its PKCS#8 PEM private key. */
export interface CertAndKey {
  cert: string;
  key: string;
}

export interface WebhookTlsState {
  /** The current CA: it signs every new serving certificate, and its key lets any replica renew. */
  ca: CertAndKey;
  /** What the webhook serves: signed by `ca`, or by `rotation.previousCA` until the switch. */
  serving: CertAndKey;
  /** Present from RotateCA until DropOldCA. */
  rotation?: {
    /** The old CA's certificate, still in the bundle; its key is no longer needed. */
    previousCA: string;
    /** When `ca` entered the bundle. */
    caRotatedAt: Date;
    /** When the serving certificate was first issued by `ca`; unset while it is the old CA's. */
    servingSwitchedAt?: Date;
  };
}

export interface TlsPolicy {
  caValidityMs: number;
  servingValidityMs: number;
  /** Renew when less than this is left (the CA: when less than this plus `overlapMs`). */
  renewBeforeMs: number;
  /** How long a new CA is published before it signs, and an old one kept after it stopped signing. */
  overlapMs: number;
  /** Names the serving certificate must cover: `serviceDnsNames(service, namespace)`. */
  dnsNames: readonly string[];
  caCommonName?: string;
}

export type RotationPlan =
  | { action: 'Create'; reason: string }
  | { action: 'None'; nextCheckAt: Date }
  | { action: 'RenewServing'; reason: string }
  | { action: 'RotateCA'; reason: string }
  | { action: 'DropOldCA'; reason: string };

/** The names the apiserver may use for a webhook Service (it calls `<svc>.<ns>.svc`). */
export function serviceDnsNames(service: string, namespace: string): string[] {
  return [service, `${service}.${namespace}`, `${service}.${namespace}.svc`];
}

async function keyPem(key: webcrypto.CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await crypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

function newKeys(): Promise<webcrypto.CryptoKeyPair> {
  return crypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
}

export async function createCA(opts: {
  commonName: string;
  notBefore: Date;
  validityMs: number;
}): Promise<CertAndKey> {
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: new x509.Name([{ CN: [opts.commonName] }]),
    notBefore: opts.notBefore,
    notAfter: new Date(opts.notBefore.getTime() + opts.validityMs),
    signingAlgorithm: ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: cert.toString('pem'), key: await keyPem(keys.privateKey) };
}

/**
 * A serverAuth leaf for `dnsNames` (an IP address among them becomes an IP SAN: an operator run
 * outside the cluster is called by URL), signed by `ca`; it ends no later than the CA.
 */
export async function issueServingCert(opts: {
  ca: CertAndKey;
  dnsNames: readonly string[];
  notBefore: Date;
  validityMs: number;
}): Promise<CertAndKey> {
  const [commonName] = opts.dnsNames;
  if (commonName === undefined) throw new Error('a serving certificate needs at least one DNS name');
  const caCert = new x509.X509Certificate(opts.ca.cert);
  const caKey = await crypto.subtle.importKey(
    'pkcs8',
    x509.PemConverter.decodeFirst(opts.ca.key),
    ALGORITHM,
    false,
    ['sign'],
  );
  const keys = await newKeys();
  const notAfter = Math.min(opts.notBefore.getTime() + opts.validityMs, caCert.notAfter.getTime());
  const cert = await x509.X509CertificateGenerator.create({
    subject: new x509.Name([{ CN: [commonName] }]),
    issuer: caCert.subjectName,
    notBefore: opts.notBefore,
    notAfter: new Date(notAfter),
    signingAlgorithm: ALGORITHM,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(
        opts.dnsNames.map((value) => ({ type: isIP(value) === 0 ? 'dns' : 'ip', value })),
      ),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: cert.toString('pem'), key: await keyPem(keys.privateKey) };
}

/** What the apiserver must trust: the current CA, then the previous one while it is kept. */
export function caBundle(state: WebhookTlsState): string {
  const certs = [state.ca.cert, ...(state.rotation ? [state.rotation.previousCA] : [])];
  return certs.map((pem) => `${pem.trim()}\n`).join('');
}

// ---- The Secret ----

/** Secret type; `tls.crt` and `tls.key` are what kubernetes.io/tls requires, the rest is ours. */
export const SECRET_TYPE = 'kubernetes.io/tls';
export const SECRET_KEYS = {
  cert: 'tls.crt',
  key: 'tls.key',
  ca: 'ca.crt',
  caKey: 'ca.key',
  bundle: 'ca-bundle.crt',
  /** RFC 3339; only during a CA rotation. */
  caRotatedAt: 'ca-rotated-at',
  servingSwitchedAt: 'serving-switched-at',
} as const;

export class TlsSecretError extends Error {
  /** The Secret data key at fault. */
  readonly key: string;
  constructor(key: string, problem: string) {
    super(`webhook TLS Secret: ${key} ${problem}`);
    this.name = 'TlsSecretError';
    this.key = key;
  }
}

const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');

/** The Secret's `data` (base64 values). */
export function encodeSecretData(state: WebhookTlsState): Record<string, string> {
  const data: Record<string, string> = {
    [SECRET_KEYS.cert]: b64(state.serving.cert),
    [SECRET_KEYS.key]: b64(state.serving.key),
    [SECRET_KEYS.ca]: b64(state.ca.cert),
    [SECRET_KEYS.caKey]: b64(state.ca.key),
    [SECRET_KEYS.bundle]: b64(caBundle(state)),
  };
  const rotation = state.rotation;
  if (rotation) {
    data[SECRET_KEYS.caRotatedAt] = b64(rotation.caRotatedAt.toISOString());
    if (rotation.servingSwitchedAt) {
      data[SECRET_KEYS.servingSwitchedAt] = b64(rotation.servingSwitchedAt.toISOString());
    }
  }
  return data;
}

/**
 * `tls.crt` (the certificate, then any chain) and `tls.key` of a Secret another party keeps
 * (cert-manager): served as they are, never written. Any PEM private key (PKCS#1, SEC1, PKCS#8).
 */
export function decodeExternalServing(
  data: Readonly<Record<string, string | undefined>> | undefined,
): CertAndKey {
  const text = (key: string): string => {
    const value = data?.[key];
    const decoded = value === undefined ? '' : Buffer.from(value, 'base64').toString('utf8');
    if (decoded.trim() === '') throw new TlsSecretError(key, 'is missing');
    return decoded;
  };
  const cert = text(SECRET_KEYS.cert);
  try {
    new x509.X509Certificate(x509.PemConverter.decodeFirst(cert));
  } catch {
    throw new TlsSecretError(SECRET_KEYS.cert, 'is not a PEM certificate');
  }
  const key = text(SECRET_KEYS.key);
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key))
    throw new TlsSecretError(SECRET_KEYS.key, 'is not a PEM private key');
  return { cert, key };
}

/** The state in a Secret's `data`; throws a TlsSecretError naming the key at fault. */
export function decodeSecretData(
  data: Readonly<Record<string, string | undefined>> | undefined,
): WebhookTlsState {
  const text = (key: string): string | undefined => {
    const value = data?.[key];
    return value === undefined ? undefined : Buffer.from(value, 'base64').toString('utf8');
  };
  const required = (key: string): string => {
    const value = text(key);
    if (value === undefined || value.trim() === '') throw new TlsSecretError(key, 'is missing');
    return value;
  };
  const certs = (key: string): x509.X509Certificate[] => {
    try {
      const blocks = x509.PemConverter.decodeWithHeaders(required(key));
      if (blocks.length === 0 || blocks.some((b) => b.type !== 'CERTIFICATE')) throw new Error();
      return blocks.map((b) => new x509.X509Certificate(b.rawData));
    } catch (error) {
      if (error instanceof TlsSecretError) throw error;
      throw new TlsSecretError(key, 'is not a PEM certificate');
    }
  };
  const cert = (key: string): string => {
    const [only, ...more] = certs(key);
    if (!only || more.length > 0) throw new TlsSecretError(key, 'must hold exactly one certificate');
    return only.toString('pem');
  };
  const privateKey = (key: string): string => {
    const pem = required(key);
    let blocks: x509.PemStruct[] = [];
    try {
      blocks = x509.PemConverter.decodeWithHeaders(pem);
    } catch {}
    if (blocks.length !== 1 || blocks[0]?.type !== 'PRIVATE KEY') {
      throw new TlsSecretError(key, 'is not a PKCS#8 PEM private key');
    }
    return pem;
  };
  const date = (key: string): Date | undefined => {
    const value = text(key);
    if (value === undefined) return undefined;
    const parsed = new Date(value.trim());
    if (Number.isNaN(parsed.getTime())) throw new TlsSecretError(key, `is not a timestamp: ${value}`);
    return parsed;
  };

  const state: WebhookTlsState = {
    ca: { cert: cert(SECRET_KEYS.ca), key: privateKey(SECRET_KEYS.caKey) },
    serving: { cert: cert(SECRET_KEYS.cert), key: privateKey(SECRET_KEYS.key) },
  };
  const current = new x509.X509Certificate(state.ca.cert);
  const bundle = certs(SECRET_KEYS.bundle);
  if (!bundle.some((c) => c.equal(current))) {
    throw new TlsSecretError(SECRET_KEYS.bundle, `does not contain ${SECRET_KEYS.ca}`);
  }
  const previous = bundle.filter((c) => !c.equal(current));
  if (previous.length > 1) throw new TlsSecretError(SECRET_KEYS.bundle, 'holds more than two CAs');
  const caRotatedAt = date(SECRET_KEYS.caRotatedAt);
  const servingSwitchedAt = date(SECRET_KEYS.servingSwitchedAt);
  const [previousCA] = previous;
  if (previousCA) {
    if (!caRotatedAt)
      throw new TlsSecretError(SECRET_KEYS.caRotatedAt, 'is missing (the bundle holds an old CA)');
    state.rotation = { previousCA: previousCA.toString('pem'), caRotatedAt };
    if (servingSwitchedAt) state.rotation.servingSwitchedAt = servingSwitchedAt;
  } else if (caRotatedAt) {
    throw new TlsSecretError(SECRET_KEYS.bundle, `holds no old CA, yet ${SECRET_KEYS.caRotatedAt} is set`);
  }
  return state;
}

// ---- What to do next ----

function checkPolicy(p: TlsPolicy): void {
  const times = [p.caValidityMs, p.servingValidityMs, p.renewBeforeMs, p.overlapMs];
  if (!times.every((t) => Number.isFinite(t) && t > 0)) throw new Error('TLS policy: durations must be > 0');
  if (p.renewBeforeMs >= p.servingValidityMs) {
    throw new Error('TLS policy: renewBeforeMs must be shorter than servingValidityMs');
  }
  if (p.renewBeforeMs + 2 * p.overlapMs >= p.caValidityMs) {
    throw new Error('TLS policy: a CA rotation (renewBeforeMs + 2 × overlapMs) must fit in caValidityMs');
  }
  if (p.dnsNames.length === 0) throw new Error('TLS policy: dnsNames is empty');
}

/** certInfo of the certificates seen last (a CA and a serving one, a rotation's next ones). */
const certInfos = new LRUCache<string, { notAfter: number; dnsNames: ReadonlySet<string> }>({ max: 8 });

/** Expiry and names of a PEM certificate; parsed once (every rotation check asks again). */
function certInfo(pem: string): { notAfter: number; dnsNames: ReadonlySet<string> } {
  const known = certInfos.get(pem);
  if (known) return known;
  const cert = new x509.X509Certificate(pem);
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const dnsNames = new Set(
    san?.names.items.filter((n) => n.type === 'dns' || n.type === 'ip').map((n) => n.value) ?? [],
  );
  const info = { notAfter: cert.notAfter.getTime(), dnsNames };
  certInfos.set(pem, info);
  return info;
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** When a PEM certificate expires. */
export function notAfter(pem: string): Date {
  return new Date(certInfo(pem).notAfter);
}

/**
 * The next step for the webhook's certificates at `now` (pure). `undefined` is no Secret, or
 * one that does not decode. Apply the step and ask again until it says None; then ask again at
 * `nextCheckAt`.
 */
export function rotationPlan(state: WebhookTlsState | undefined, now: Date, policy: TlsPolicy): RotationPlan {
  checkPolicy(policy);
  if (!state) return { action: 'Create', reason: 'no readable certificates' };
  const t = now.getTime();
  const { renewBeforeMs: renewBefore, overlapMs: overlap } = policy;
  const ca = certInfo(state.ca.cert);
  const serving = certInfo(state.serving.cert);
  const rotation = state.rotation;
  const checks: number[] = [];

  // Rotation, step 2: the new CA is published but does not sign yet.
  if (rotation && !rotation.servingSwitchedAt) {
    const switchAt = rotation.caRotatedAt.getTime() + overlap;
    if (t >= switchAt) {
      return {
        action: 'RenewServing',
        reason: 'the new CA has been in the bundle for the overlap: serving from it',
      };
    }
    if (serving.notAfter <= switchAt) {
      return {
        action: 'RenewServing',
        reason: `late rotation: the old CA's serving certificate expires at ${iso(serving.notAfter)}, before the overlap ends`,
      };
    }
    return { action: 'None', nextCheckAt: new Date(switchAt) };
  }
  if (t >= ca.notAfter) return { action: 'Create', reason: `the CA expired at ${iso(ca.notAfter)}` };

  // Rotation, step 3: every replica has served from the new CA for the overlap.
  if (rotation?.servingSwitchedAt) {
    const dropAt = rotation.servingSwitchedAt.getTime() + overlap;
    if (t >= dropAt)
      return { action: 'DropOldCA', reason: 'every replica serves a certificate of the new CA' };
    checks.push(dropAt);
  }

  const missing = policy.dnsNames.filter((name) => !serving.dnsNames.has(name));
  if (missing.length > 0) {
    return { action: 'RenewServing', reason: `the serving certificate does not cover ${missing.join(', ')}` };
  }

  // Rotation, step 1.
  if (!rotation) {
    const rotateAt = ca.notAfter - renewBefore - overlap;
    if (t >= rotateAt) {
      if (serving.notAfter < ca.notAfter && serving.notAfter - renewBefore < t + overlap) {
        return {
          action: 'RenewServing',
          reason:
            "a CA rotation is due: the serving certificate is first extended to its CA's end, to last through the overlap",
        };
      }
      return { action: 'RotateCA', reason: `the CA expires at ${iso(ca.notAfter)}` };
    }
    checks.push(rotateAt);
  }

  const renewAt = serving.notAfter - renewBefore;
  if (t >= renewAt) {
    return { action: 'RenewServing', reason: `the serving certificate expires at ${iso(serving.notAfter)}` };
  }
  return { action: 'None', nextCheckAt: new Date(Math.min(renewAt, ...checks)) };
}

/** The state after `plan` (new keys and certificates are made here, with `now` as their start). */
export async function applyRotation(
  state: WebhookTlsState | undefined,
  plan: RotationPlan,
  now: Date,
  policy: TlsPolicy,
): Promise<WebhookTlsState> {
  const notBefore = new Date(now.getTime() - BACKDATE_MS);
  const newCA = () =>
    createCA({
      commonName: `${policy.caCommonName ?? DEFAULT_CA_COMMON_NAME}@${Math.floor(now.getTime() / 1000)}`,
      notBefore,
      validityMs: policy.caValidityMs,
    });
  const issue = (ca: CertAndKey) =>
    issueServingCert({ ca, dnsNames: policy.dnsNames, notBefore, validityMs: policy.servingValidityMs });

  if (plan.action === 'Create') {
    const ca = await newCA();
    return { ca, serving: await issue(ca) };
  }
  if (!state) throw new Error(`${plan.action} needs an existing state`);
  switch (plan.action) {
    case 'None':
      return state;
    case 'RotateCA':
      return {
        ca: await newCA(),
        serving: state.serving,
        rotation: { previousCA: state.ca.cert, caRotatedAt: now },
      };
    case 'RenewServing': {
      // Always from the current CA: during a rotation, the first such renewal is the switch.
      const next: WebhookTlsState = { ca: state.ca, serving: await issue(state.ca) };
      if (state.rotation) {
        next.rotation = { ...state.rotation, servingSwitchedAt: state.rotation.servingSwitchedAt ?? now };
      }
      return next;
    }
    case 'DropOldCA':
      return { ca: state.ca, serving: state.serving };
  }
}

// ---- Verification ----

function parseBundle(pem: string): x509.X509Certificate[] {
  return x509.PemConverter.decode(pem).map((der) => new x509.X509Certificate(der));
}

export type ChainCheck = { ok: true } | { ok: false; reason: string };

/**
 * Would a client trusting `bundlePem` (the caBundle) accept `servingCertPem` at `at` for
 * `dnsName`? Signatures, validity periods, CA and serverAuth flags; no revocation.
 */
export async function verifyChain(
  servingCertPem: string,
  bundlePem: string,
  opts: { at: Date; dnsName?: string },
): Promise<ChainCheck> {
  const fail = (reason: string): ChainCheck => ({ ok: false, reason });
  const leaf = new x509.X509Certificate(servingCertPem);
  const roots = parseBundle(bundlePem);
  const chain = await new x509.X509ChainBuilder({ certificates: roots }).build(leaf);
  const root = chain[chain.length - 1];
  if (chain.length < 2 || !root || !roots.some((r) => r.equal(root))) {
    return fail(`${leaf.subject} (issuer ${leaf.issuer}) is not signed by a CA in the bundle`);
  }
  for (const cert of chain) {
    if (opts.at < cert.notBefore || opts.at > cert.notAfter) {
      return fail(
        `${cert.subject} is valid ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()}`,
      );
    }
  }
  if (!chain.slice(1).every((c) => c.getExtension(x509.BasicConstraintsExtension)?.ca)) {
    return fail('an issuer is not a CA');
  }
  if (!leaf.getExtension(x509.ExtendedKeyUsageExtension)?.usages.includes(x509.ExtendedKeyUsage.serverAuth)) {
    return fail(`${leaf.subject} has no serverAuth usage`);
  }
  if (opts.dnsName !== undefined && !certInfo(servingCertPem).dnsNames.has(opts.dnsName)) {
    return fail(`${leaf.subject} does not cover ${opts.dnsName}`);
  }
  return { ok: true };
}
