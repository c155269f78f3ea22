// Before an httpGet readiness probe is injected, ask a running pod the same question the kubelet
// will ask: a probe nothing answers keeps every new pod unready, and the rollout stalls. The
// planning code reads verdicts synchronously (ProbeVerifier.get / lookup, fed to
// desiredSettings' probeVerdict); whoever reconciles runs verify() when there is none yet.
//
// The request is the kubelet's (pkg/probe/http): GET with `Accept: */*` and a kube-probe user
// agent; success is 200 <= status < 400; redirects are followed to the same host (at most 10),
// while a redirect to another host counts as its own 3xx answer, i.e. success. One deadline
// covers the whole exchange, as the probe's timeoutSeconds does.
import * as http from 'node:http';
import type { V1Container, V1Deployment, V1Pod } from '@kubernetes/client-node';
import { LRUCache } from 'lru-cache';
import { deploymentUid } from '../policy/match.ts';
import type { ProbeVerdict, ProbeVerdictLookup } from '../policy/types.ts';
import { podUrl } from '../util/pod-url.ts';

export type { ProbeVerdict } from '../policy/types.ts';

/** Pods tried per verification: a second one in case the first is busy or about to go. */
export const MAX_TRIES = 2;
export const DEFAULT_TTL_MS = 5 * 60_000;
export const DEFAULT_MAX_ENTRIES = 10_000;
/**
 * A container running for less than this is not asked: an app still starting refuses the
 * connection like one that does not serve the port, and a wrong Unverified would be kept.
 */
export const DEFAULT_SETTLE_MS = 10_000;
/** A check never waits longer than this, whatever the probe's timeoutSeconds (up to an hour). */
export const MAX_TIMEOUT_MS = 5_000;
/** The kubelet's default probe timeout (timeoutSeconds 1). */
export const DEFAULT_TIMEOUT_MS = 1000;
const MAX_REDIRECTS = 10;
const USER_AGENT = 'kube-probe/graceful-shutdown-operator';

// --- which pods ----------------------------------------------------------------------------------

function isReady(pod: V1Pod): boolean {
  return (pod.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}

function createdAt(pod: V1Pod): number {
  const created = pod.metadata?.creationTimestamp;
  const ms = created === undefined ? Number.NaN : new Date(created).getTime();
  return Number.isFinite(ms) ? ms : 0;
}

/**
 * The pods worth asking, best first, at most `max`: Running, not terminating, with an IP, not
 * on the host's network, and the container running. Ready pods come first, then pods running the template's image for the
 * container (the template the probe will be written to), then the newest.
 */
/**
 * The pod belongs to one of the Deployment's ReplicaSets (named `<deployment>-<template hash>`),
 * not to another workload whose labels the selector also matches, nor a bare pod.
 */
export function ownedByDeployment(pod: V1Pod, deployment: V1Deployment): boolean {
  const prefix = `${deployment.metadata?.name ?? ''}-`;
  return (pod.metadata?.ownerReferences ?? []).some(
    (owner) =>
      owner.kind === 'ReplicaSet' &&
      owner.name.startsWith(prefix) &&
      !owner.name.slice(prefix.length).includes('-'),
  );
}

/** Running, not terminating, with an IP, not on the host's network, and the container running. */
export function runningPods(pods: readonly V1Pod[], container: string): V1Pod[] {
  return pods.filter(
    (pod) =>
      // A pod on the host's network answers with the node's address: never ask the node.
      pod.spec?.hostNetwork !== true &&
      pod.status?.phase === 'Running' &&
      pod.metadata?.deletionTimestamp === undefined &&
      Boolean(pod.status.podIP) &&
      (pod.status.containerStatuses ?? []).some(
        (s) => s.name === container && s.state?.running !== undefined,
      ),
  );
}

/** When the container last started (epoch ms); unknown counts as long ago. */
function runningSince(pod: V1Pod, container: string): number {
  const startedAt = pod.status?.containerStatuses?.find((s) => s.name === container)?.state?.running
    ?.startedAt;
  const ms = startedAt === undefined ? Number.NaN : new Date(startedAt).getTime();
  return Number.isFinite(ms) ? ms : Number.NEGATIVE_INFINITY;
}

export function podsToTry(
  deployment: V1Deployment,
  pods: readonly V1Pod[],
  container: string,
  max = MAX_TRIES,
  /** Only containers started at or before this (epoch ms) are asked. */
  settledBefore = Number.POSITIVE_INFINITY,
): V1Pod[] {
  const templateImage = deployment.spec?.template?.spec?.containers?.find((c) => c.name === container)?.image;
  const candidates = runningPods(pods, container).filter(
    (pod) => runningSince(pod, container) <= settledBefore,
  );
  const rank = (pod: V1Pod): [number, number, number] => [
    isReady(pod) ? 0 : 1,
    pod.spec?.containers?.find((c) => c.name === container)?.image === templateImage ? 0 : 1,
    -createdAt(pod),
  ];
  return candidates
    .map((pod) => ({ pod, rank: rank(pod) }))
    .sort((a, b) => a.rank[0] - b.rank[0] || a.rank[1] - b.rank[1] || a.rank[2] - b.rank[2])
    .slice(0, max)
    .map(({ pod }) => pod);
}

/**
 * The port number the kubelet would probe: a number as is, a name looked up in the probed
 * container's own ports. Undefined when the container declares no port of that name.
 */
export function resolveContainerPort(
  container: V1Container | undefined,
  port: number | string,
): number | undefined {
  if (typeof port === 'number') return port;
  return container?.ports?.find((p) => p.name === port)?.containerPort;
}

// --- one request ---------------------------------------------------------------------------------

export interface ProbeTarget {
  podIP: string;
  port: number;
  /** The httpGet path, starting with /. */
  path: string;
  /** Only plain HTTP: the operator writes no scheme, and the kubelet's default is HTTP. */
  scheme?: 'HTTP';
  /** For the whole exchange, redirects included. */
  timeoutMs: number;
  /** Aborting makes checkProbe reject (nothing was learnt), unlike the timeout. */
  signal?: AbortSignal;
}

export interface ProbeAnswer {
  /** As the kubelet judges it: 200 <= status < 400. */
  ok: boolean;
  /** The URL asked first. */
  url: string;
  /** What happened, to follow "GET <url> on pod <pod> ": "answered 404", "failed: connection refused". */
  outcome: string;
  /**
   * No connection could be made (no route, no answer to the connect): the pod is not reachable
   * from the operator (a NetworkPolicy, another network), which says nothing about the app.
   */
  unreachable?: boolean;
}

const ERROR_CODES: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'connection timed out',
  EPIPE: 'connection closed',
};

function describeError(err: unknown): string {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && ERROR_CODES[code] !== undefined) return ERROR_CODES[code];
  return err instanceof Error ? err.message : String(err);
}

/** Connecting failed for want of a route or an answer: the pod is not reachable from here. */
const UNREACHABLE_CODES = new Set(['EHOSTUNREACH', 'ENETUNREACH']);

function get(
  url: URL,
  signal: AbortSignal,
  onConnect: () => void,
): Promise<{ status: number; location: string | undefined }> {
  return new Promise((resolve, reject) => {
    const request = http.get(
      url,
      { agent: false, signal, headers: { 'user-agent': USER_AGENT, accept: '*/*' } },
      (response) => {
        resolve({ status: response.statusCode ?? 0, location: response.headers.location });
        // The status is all that counts: do not wait for (or buffer) the body.
        response.destroy();
      },
    );
    request.on('socket', (socket) => socket.once('connect', onConnect));
    request.on('error', reject);
  });
}

/** GET the path on the pod like the kubelet's httpGet probe does. Rejects only when `signal` aborts. */
export async function checkProbe(target: ProbeTarget): Promise<ProbeAnswer> {
  const url = podUrl(target.podIP, target.port, target.path);
  target.signal?.throwIfAborted();
  const timeout = AbortSignal.timeout(target.timeoutMs);
  const signal = target.signal ? AbortSignal.any([target.signal, timeout]) : timeout;
  let current = new URL(url);
  let connected = false;
  try {
    for (let redirects = 0; ; redirects++) {
      const { status, location } = await get(current, signal, () => {
        connected = true;
      });
      const redirected = redirects > 0 ? ` after a redirect to ${current.href}` : '';
      const answered = { ok: status >= 200 && status < 400, url, outcome: `answered ${status}${redirected}` };
      if (status < 300 || status >= 400 || location === undefined) return answered;
      const next = new URL(location, current);
      // Another host (or https, which the kubelet would follow without verifying): the 3xx is
      // the answer.
      if (next.protocol !== 'http:' || next.hostname !== current.hostname) return answered;
      if (redirects + 1 >= MAX_REDIRECTS)
        return { ok: false, url, outcome: `failed: stopped after ${MAX_REDIRECTS} redirects` };
      current = next;
    }
  } catch (err) {
    if (target.signal?.aborted) throw target.signal.reason;
    const code = (err as { code?: unknown } | undefined)?.code;
    if (!connected && (timeout.aborted || (typeof code === 'string' && UNREACHABLE_CODES.has(code))))
      return {
        ok: false,
        unreachable: true,
        url,
        outcome: timeout.aborted
          ? `could not connect within ${target.timeoutMs} ms`
          : `failed: ${describeError(err)}`,
      };
    if (timeout.aborted) return { ok: false, url, outcome: `got no answer within ${target.timeoutMs} ms` };
    return { ok: false, url, outcome: `failed: ${describeError(err)}` };
  }
}

// --- verdicts ------------------------------------------------------------------------------------

export interface VerifyInput {
  deployment: V1Deployment;
  /** The Deployment's pods (the operator's pod cache); podsToTry picks from them. */
  pods: readonly V1Pod[];
  /** The container the probe would be written to. */
  container: string;
  path: string;
  /** As in the probe's httpGet: a number, or a name resolved in each pod's container. */
  port: number | string;
  /** Per pod; pass the probe's timeoutSeconds x 1000 to judge as the kubelet will. */
  timeoutMs?: number;
  /** Containers running for less than this are not asked (default DEFAULT_SETTLE_MS). */
  settleMs?: number;
  /** The clock, epoch ms (tests). */
  now?: number;
  signal?: AbortSignal;
}

/** The key of one probe of one Deployment: deployment UID, container, path and port. */
export function probeKey(
  deploymentUid: string,
  container: string,
  path: string,
  port: number | string,
): string {
  return JSON.stringify([deploymentUid, container, path, port]);
}

/** Tries the probe on up to MAX_TRIES pods: Verified by the first that answers 2xx/3xx. */
export async function verifyProbe(
  input: VerifyInput,
  check: (target: ProbeTarget) => Promise<ProbeAnswer> = checkProbe,
): Promise<ProbeVerdict> {
  const { deployment, container, path, port } = input;
  const settledBefore = (input.now ?? Date.now()) - (input.settleMs ?? DEFAULT_SETTLE_MS);
  const pods = podsToTry(deployment, input.pods, container, MAX_TRIES, settledBefore);
  if (pods.length === 0 && runningPods(input.pods, container).length > 0) {
    return {
      state: 'Pending',
      message: `container ${container} has run for less than ${(input.settleMs ?? DEFAULT_SETTLE_MS) / 1000} s in every pod: GET ${path} on port ${port} is asked once it has settled`,
    };
  }
  if (pods.length === 0) {
    const { namespace, name } = deployment.metadata ?? {};
    return {
      state: 'NoPods',
      message: `no pod of ${namespace}/${name} is running container ${container} with an IP: GET ${path} on port ${port} was not tried`,
    };
  }
  const tried: string[] = [];
  const failures: string[] = [];
  let unreachable = 0;
  for (const pod of pods) {
    const podName = pod.metadata?.name ?? '';
    const podContainer = pod.spec?.containers?.find((c) => c.name === container);
    const number = resolveContainerPort(podContainer, port);
    if (number === undefined) {
      tried.push(`port ${port} of container ${container} in pod ${podName}`);
      failures.push(`container ${container} of pod ${podName} declares no port named ${port}`);
      continue;
    }
    const answer = await check({
      podIP: pod.status?.podIP ?? '',
      port: number,
      path,
      scheme: 'HTTP',
      timeoutMs: Math.min(input.timeoutMs ?? DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS),
      ...(input.signal ? { signal: input.signal } : {}),
    });
    const request = `GET ${answer.url} on pod ${podName}`;
    if (answer.ok) return { state: 'Verified', tried: `${request} ${answer.outcome}` };
    tried.push(request);
    failures.push(`${request} ${answer.outcome}`);
    if (answer.unreachable) unreachable++;
  }
  // Only unreachable pods: the app was not asked, so nothing speaks for or against the probe.
  if (unreachable > 0 && unreachable === pods.length)
    return { state: 'Unreachable', message: failures.join('; ') };
  return { state: 'Unverified', tried: tried.join('; '), message: failures.join('; ') };
}

export interface ProbeVerifierOptions {
  /** How long a verdict is kept (ms, a positive integer): gone once older. Default 5 minutes. */
  ttlMs?: number;
  /** Verdicts kept at most; the one stored longest ago goes first. Default 10,000. */
  maxEntries?: number;
  now?: () => number;
  /** The request; checkProbe unless a test says otherwise. */
  check?: (target: ProbeTarget) => Promise<ProbeAnswer>;
}

/**
 * Verdicts in memory, by probeKey: read synchronously by planning (get, lookup), filled by
 * verify(), which runs at most one check per key at a time.
 */
export class ProbeVerifier {
  readonly #now: () => number;
  readonly #check: (target: ProbeTarget) => Promise<ProbeAnswer>;
  /**
   * Bounded and expiring (lru-cache's max and ttl, on the `now` clock). Read with peek, which
   * leaves an entry's place alone: the verdict stored longest ago goes first, however often read.
   */
  readonly #verdicts: LRUCache<string, ProbeVerdict>;
  /** The keys of #verdicts by Deployment uid: verdictsFor reads one Deployment's, not all. */
  readonly #byUid = new Map<string, Set<string>>();
  readonly #inFlight = new Map<string, Promise<ProbeVerdict>>();

  constructor(options: ProbeVerifierOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#check = options.check ?? checkProbe;
    this.#verdicts = new LRUCache<string, ProbeVerdict>({
      max: Math.max(1, options.maxEntries ?? DEFAULT_MAX_ENTRIES),
      ttl: options.ttlMs ?? DEFAULT_TTL_MS,
      // Read the clock on every check (the default caches it for 1 ms behind a timer).
      ttlResolution: 0,
      perf: { now: this.#now },
      // Evicted, expired or deleted (not merely replaced): out of the uid index too.
      dispose: (_verdict, key, reason) => {
        if (reason !== 'set') this.#unindex(key);
      },
    });
  }

  /** The verdict for the key, unless there is none or it has expired (then it is dropped). */
  get(key: string): ProbeVerdict | undefined {
    const verdict = this.#verdicts.peek(key);
    if (verdict === undefined) this.#verdicts.delete(key);
    return verdict;
  }

  /**
   * The verdicts held for one Deployment (unexpired), as [container, path, port, verdict]: what
   * the admission worker thread is given to decide with (webhook/admission-snapshot.ts).
   */
  verdictsFor(deploymentUid: string): [string, string, number | string, ProbeVerdict][] {
    const found: [string, string, number | string, ProbeVerdict][] = [];
    for (const key of [...(this.#byUid.get(deploymentUid) ?? [])]) {
      const verdict = this.get(key);
      if (verdict === undefined) continue;
      const [, container, path, port] = JSON.parse(key) as [string, string, string, number | string];
      found.push([container, path, port, verdict]);
    }
    return found;
  }

  /** get() bound to one Deployment, in the shape desiredSettings' probeVerdict takes. */
  lookup(deploymentUid: string): ProbeVerdictLookup {
    return (container, path, port) => this.get(probeKey(deploymentUid, container, path, port));
  }

  /**
   * Checks the probe on the Deployment's running pods and keeps the verdict. A check already
   * running for the same key is joined, not repeated. Rejects only when `signal` aborts, and
   * then keeps nothing.
   */
  verify(input: VerifyInput): Promise<ProbeVerdict> {
    const key = probeKey(deploymentUid(input.deployment), input.container, input.path, input.port);
    const running = this.#inFlight.get(key);
    if (running !== undefined) return running;
    const promise = verifyProbe({ now: this.#now(), ...input }, this.#check)
      .then((verdict) => {
        // Pending is no answer: asked again on the next reconcile.
        if (verdict.state !== 'Pending') this.#store(key, verdict);
        return verdict;
      })
      .finally(() => this.#inFlight.delete(key));
    this.#inFlight.set(key, promise);
    return promise;
  }

  /** Verdicts held (expired ones included until read or pushed out). */
  get size(): number {
    return this.#verdicts.size;
  }

  #store(key: string, verdict: ProbeVerdict): void {
    this.#verdicts.set(key, verdict);
    const uid = (JSON.parse(key) as [string])[0];
    this.#byUid.set(uid, (this.#byUid.get(uid) ?? new Set()).add(key));
  }

  #unindex(key: string): void {
    const uid = (JSON.parse(key) as [string])[0];
    const keys = this.#byUid.get(uid);
    keys?.delete(key);
    if (keys?.size === 0) this.#byUid.delete(uid);
  }
}
