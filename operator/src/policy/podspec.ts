// Reading a pod template the way the apiserver would: defaults it fills in, hooks it runs, and a
// comparison that ignores key order and defaulted fields. Shared by desired.ts and diff.ts.
import type { V1Container, V1Deployment, V1LifecycleHandler, V1Probe } from '@kubernetes/client-node';

/** What the apiserver sets when a pod template omits terminationGracePeriodSeconds. */
export const DEFAULT_GRACE_SECONDS = 30;

export function regularContainers(deployment: V1Deployment): V1Container[] {
  return deployment.spec?.template?.spec?.containers ?? [];
}

/** Init containers with restartPolicy Always run beside the app (native sidecars, KEP-753). */
export function nativeSidecars(deployment: V1Deployment): V1Container[] {
  return (deployment.spec?.template?.spec?.initContainers ?? []).filter((c) => c.restartPolicy === 'Always');
}

export function currentGraceSeconds(deployment: V1Deployment): number {
  return deployment.spec?.template?.spec?.terminationGracePeriodSeconds ?? DEFAULT_GRACE_SECONDS;
}

/** JSON with sorted keys and without undefined/null members: equal values give equal strings. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(canonicalize(value));
}

function canonicalize(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonicalize);
  if (value instanceof Date) return value.toISOString();
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const member = (value as Record<string, unknown>)[key];
      if (member !== undefined && member !== null) out[key] = canonicalize(member);
    }
    return out;
  }
  return value;
}

/** The port as the kubelet resolves it: "8080" and 8080 are the same port in an httpGet. */
function normalizePort(port: number | string | undefined): number | string | undefined {
  if (typeof port === 'string' && /^[0-9]+$/.test(port)) return Number(port);
  return port;
}

function normalizeHttpGet<T extends { scheme?: string; port: number | string; path?: string }>(
  httpGet: T,
): T {
  // The apiserver defaults scheme to HTTP and path to "/".
  return {
    ...httpGet,
    scheme: httpGet.scheme ?? 'HTTP',
    path: httpGet.path ?? '/',
    port: normalizePort(httpGet.port),
  };
}

/** A probe with the apiserver's defaults filled in (corev1 SetDefaults_Probe). */
export function normalizeProbe(probe: V1Probe): V1Probe {
  return {
    ...probe,
    ...(probe.httpGet ? { httpGet: normalizeHttpGet(probe.httpGet) } : {}),
    timeoutSeconds: probe.timeoutSeconds ?? 1,
    periodSeconds: probe.periodSeconds ?? 10,
    successThreshold: probe.successThreshold ?? 1,
    failureThreshold: probe.failureThreshold ?? 3,
  };
}

export function normalizeHandler(handler: V1LifecycleHandler): V1LifecycleHandler {
  return { ...handler, ...(handler.httpGet ? { httpGet: normalizeHttpGet(handler.httpGet) } : {}) };
}

/**
 * True when every field of `wanted` has the same value in `existing` (after the apiserver's
 * defaults): what server-side apply of `wanted` would leave unchanged. Fields only in
 * `existing` (a user's initialDelaySeconds) do not matter; arrays compare whole.
 */
export function containsFields(existing: unknown, wanted: unknown): boolean {
  if (wanted === undefined || wanted === null) return true;
  if (Array.isArray(wanted)) return canonicalJson(existing) === canonicalJson(wanted);
  if (typeof wanted === 'object') {
    if (existing === null || typeof existing !== 'object' || Array.isArray(existing)) return false;
    return Object.entries(wanted).every(([key, value]) =>
      containsFields((existing as Record<string, unknown>)[key], value),
    );
  }
  return existing === wanted;
}

const HANDLER_KINDS = ['exec', 'httpGet', 'tcpSocket', 'grpc', 'sleep'] as const;

/** A probe or hook has exactly one handler: another kind beside the wanted one is a difference. */
export function sameHandlerKinds(existing: object, wanted: object): boolean {
  const has = (value: object, kind: string) => (value as Record<string, unknown>)[kind] !== undefined;
  return HANDLER_KINDS.every((kind) => !has(existing, kind) || has(wanted, kind));
}

/** The existing probe has every field of the wanted one (defaults considered) and no other handler. */
export function probeSatisfies(existing: V1Probe | undefined, wanted: V1Probe): boolean {
  return (
    existing !== undefined &&
    sameHandlerKinds(existing, wanted) &&
    containsFields(normalizeProbe(existing), normalizeProbe(wanted))
  );
}

/** The existing hook has every field of the wanted one (defaults considered) and no other handler. */
export function handlerSatisfies(
  existing: V1LifecycleHandler | undefined,
  wanted: V1LifecycleHandler,
): boolean {
  return (
    existing !== undefined &&
    sameHandlerKinds(existing, wanted) &&
    containsFields(normalizeHandler(existing), normalizeHandler(wanted))
  );
}

export function probesEqual(a: V1Probe | undefined, b: V1Probe | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return canonicalJson(normalizeProbe(a)) === canonicalJson(normalizeProbe(b));
}

export function handlersEqual(a: V1LifecycleHandler | undefined, b: V1LifecycleHandler | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return canonicalJson(normalizeHandler(a)) === canonicalJson(normalizeHandler(b));
}

/** A sleep binary by any of the paths images put it at. */
const SLEEP = /^(?:\/bin\/|\/usr\/bin\/|\/busybox\/)?sleep$/;
/** A POSIX shell by any of the paths images put it at (busybox's too: distroless :debug). */
const SHELL = /^(?:\/bin\/|\/usr\/bin\/|\/busybox\/)?(?:ba|da|a)?sh$/;
/** A shell's option cluster that takes the script from the next argument: -c, -ec, -xc... */
const SCRIPT_OPTION = /^-[a-z]*c[a-z]*$/;
/** sleep's argument as GNU coreutils and busybox read it: a number, a fraction, a unit. */
const DURATION = /^(\d+(?:\.\d*)?|\.\d+)([smhd]?)$/;
const UNIT_SECONDS: Readonly<Record<string, number>> = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 };
/** One `sleep ARG` at the start of a script, with what separates it from the next command. */
const LEADING_SLEEP = /^\s*(?:exec\s+)?(?:\/bin\/|\/usr\/bin\/|\/busybox\/)?sleep\s+(\S+?)\s*(;|&&|\n|$)/;

/** `sleep`'s argument in seconds, rounded up (the hook lasts at least that); undefined if not one. */
function sleepArgument(text: string): number | undefined {
  const match = DURATION.exec(text);
  if (!match?.[1]) return undefined;
  return Math.ceil(Number(match[1]) * (UNIT_SECONDS[match[2] ?? ''] ?? 1));
}

/**
 * The seconds a shell script waits before anything else: its leading `sleep` commands added up
 * (`sleep 40; nginx -s quit` waits at least 40 s, then quits). Undefined when it does not start
 * with one: what it does first cannot be timed.
 */
function leadingSleeps(script: string): number | undefined {
  let rest = script;
  let total: number | undefined;
  for (;;) {
    const match = LEADING_SLEEP.exec(rest);
    const seconds = match?.[1] === undefined ? undefined : sleepArgument(match[1]);
    if (!match || seconds === undefined) return total;
    total = (total ?? 0) + seconds;
    if (match[2] === '') return total;
    rest = rest.slice(match[0].length);
  }
}

/**
 * How long a preStop hook waits, when that can be read: the native sleep action, or an exec of
 * `sleep N` (`30`, `30s`, `30.5`, `1m`), directly or through a shell (`sh -c`, `/busybox/sh -ec`),
 * where a script's leading sleeps count (`sleep 30 && nginx -s quit`: at least 30 s). An httpGet
 * hook's duration is unknowable: undefined.
 */
export function preStopSummary(
  handler: V1LifecycleHandler | undefined,
): { action: 'Sleep' | 'Exec'; seconds: number } | undefined {
  if (handler === undefined) return undefined;
  if (handler.sleep !== undefined) {
    const seconds = readSeconds(handler.sleep.seconds);
    return seconds === undefined ? undefined : { action: 'Sleep', seconds };
  }
  const command = handler.exec?.command;
  if (!Array.isArray(command) || command.length === 0) return undefined;
  const [first, second, third] = command.map(String);
  if (command.length === 2 && SLEEP.test(first ?? '')) {
    const seconds = sleepArgument(second ?? '');
    return seconds === undefined ? undefined : { action: 'Exec', seconds: readSeconds(seconds) ?? 0 };
  }
  if (command.length === 3 && SHELL.test(first ?? '') && SCRIPT_OPTION.test(second ?? '')) {
    const seconds = leadingSleeps(third ?? '');
    return seconds === undefined ? undefined : { action: 'Exec', seconds: readSeconds(seconds) ?? 0 };
  }
  return undefined;
}

/**
 * The longest wait read from a user's hook. The grace period written follows the hook (one
 * second longer): `sleep 99999999999999999999` would make it 1e+23, which no apiserver can
 * decode into an int64, so every write carrying it would fail. A day is far past any drain.
 */
export const MAX_HOOK_SECONDS = 86_400;

/** A hook's seconds as a bounded whole number; undefined when not a number at all. */
function readSeconds(value: unknown): number | undefined {
  if (typeof value !== 'number' || Number.isNaN(value) || value < 0) return undefined;
  return Math.min(MAX_HOOK_SECONDS, Math.floor(value));
}

/** "httpGet /readyz:8080", with timing when asked: the short form used in change descriptions. */
export function describeProbe(probe: V1Probe | undefined, withTiming = false): string {
  if (probe === undefined) return 'missing';
  const timing = withTiming
    ? ` (period ${probe.periodSeconds ?? 10}s, timeout ${probe.timeoutSeconds ?? 1}s, failureThreshold ${probe.failureThreshold ?? 3})`
    : '';
  if (probe.httpGet) return `httpGet ${probe.httpGet.path ?? '/'}:${probe.httpGet.port}${timing}`;
  if (probe.tcpSocket) return `tcpSocket :${probe.tcpSocket.port}${timing}`;
  if (probe.grpc) return `grpc :${probe.grpc.port}${timing}`;
  if (probe.exec) return `exec ${JSON.stringify(probe.exec.command ?? [])}${timing}`;
  return `probe${timing}`;
}

export function describeHandler(handler: V1LifecycleHandler | undefined): string {
  if (handler === undefined) return 'missing';
  if (handler.sleep) return `sleep ${handler.sleep.seconds}s`;
  if (handler.exec) return `exec ${JSON.stringify(handler.exec.command ?? [])}`;
  if (handler.httpGet) return `httpGet ${handler.httpGet.path ?? '/'}:${handler.httpGet.port}`;
  if (handler.tcpSocket) return `tcpSocket :${handler.tcpSocket.port}`;
  return 'empty handler';
}
