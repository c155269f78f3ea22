// What a policy wants written to one Deployment: readiness probe, preStop hook, grace period.
// The rules (which container gets what, the grace arithmetic) are explained in
// docs/design/reconcile.md.
import type { V1Container, V1Deployment, V1LifecycleHandler, V1Probe } from '@kubernetes/client-node';
import {
  READINESS_PATH_ANNOTATION,
  READINESS_PORT_ANNOTATION,
  SIDECARS_ANNOTATION,
} from '../api/annotations.ts';
import {
  type GracefulShutdownPolicySpec,
  isPortNumberOrName,
  MAX_SECONDS,
  type ShutdownSettings,
} from '../api/policy.ts';
import {
  currentGraceSeconds,
  handlerSatisfies,
  nativeSidecars,
  preStopSummary,
  probeSatisfies,
  regularContainers,
} from './podspec.ts';
import { classifyPort, findContainerPort, httpProbeOnPort, portNumber } from './protocols.ts';
import { findSidecars } from './sidecars.ts';
import type {
  AnnotationError,
  ClusterFacts,
  ContainerPlan,
  DesiredResult,
  DrainTime,
  LatencyObservation,
  PlanNote,
  ProbeVerdictLookup,
  ServicePortLookup,
  ShutdownPlan,
  ValidPolicy,
} from './types.ts';

export type { ContainerPlan, DesiredResult, ShutdownPlan } from './types.ts';

// --- cluster version ---------------------------------------------------------------------------

export interface ServerVersion {
  major: string;
  minor: string;
  gitVersion?: string;
}

/** major.minor from /version; minor may carry a suffix ("30+" on GKE and EKS). */
function parseServerVersion(version: ServerVersion): { major: number; minor: number } | undefined {
  const major = Number.parseInt(version.major, 10);
  const minor = Number.parseInt(version.minor, 10);
  if (Number.isFinite(major) && Number.isFinite(minor)) return { major, minor };
  const match = /^v?([0-9]+)\.([0-9]+)/.exec(version.gitVersion ?? '');
  if (match?.[1] === undefined || match[2] === undefined) return undefined;
  return { major: Number(match[1]), minor: Number(match[2]) };
}

function atLeast(version: ServerVersion, minor: number): boolean {
  const parsed = parseServerVersion(version);
  // An unreadable version counts as old: Exec works everywhere, Sleep only on new clusters.
  if (parsed === undefined) return false;
  return parsed.major > 1 || (parsed.major === 1 && parsed.minor >= minor);
}

/** The native preStop sleep action is on by default from 1.30 (beta; alpha and off in 1.29; GA 1.34). */
export function supportsNativeSleep(version: ServerVersion): boolean {
  return atLeast(version, 30);
}

/** A native sleep of 0 seconds is on by default from 1.33 (KEP-4818 beta). */
export function supportsNativeSleepZero(version: ServerVersion): boolean {
  return atLeast(version, 33);
}

/**
 * The oldest Kubernetes minor the operator supports and is tested on (npm run test:compat):
 * the first with ValidatingAdmissionPolicy v1 and webhook matchConditions stable (the install
 * uses both) and the native sleep action on by default.
 */
export const OLDEST_SUPPORTED_MINOR = 30;

/** A known server version older than the oldest supported (an unreadable one is not judged). */
export function olderThanSupported(version: ServerVersion): boolean {
  const parsed = parseServerVersion(version);
  return parsed !== undefined && parsed.major === 1 && parsed.minor < OLDEST_SUPPORTED_MINOR;
}

export function clusterFacts(version: ServerVersion): ClusterFacts {
  return { nativeSleep: supportsNativeSleep(version), nativeSleepZero: supportsNativeSleepZero(version) };
}

// --- per-Deployment annotations ----------------------------------------------------------------

export type AnnotationOverrides =
  | { ok: true; path?: string; port?: number | string; sidecars: string[] }
  | { ok: false; errors: AnnotationError[] };

const HTTP_PATH = /^\/\S*$/;
const CONTAINER_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Reads and validates the readiness-path, readiness-port and sidecars annotations. */
export function readAnnotationOverrides(deployment: V1Deployment): AnnotationOverrides {
  const annotations = deployment.metadata?.annotations ?? {};
  const errors: AnnotationError[] = [];
  const result: { path?: string; port?: number | string; sidecars: string[] } = { sidecars: [] };

  const path = annotations[READINESS_PATH_ANNOTATION];
  if (path !== undefined) {
    if (HTTP_PATH.test(path) && path.length <= 1024) result.path = path;
    else
      errors.push({
        annotation: READINESS_PATH_ANNOTATION,
        message: `${JSON.stringify(path)} is not an HTTP path: it must start with / and contain no spaces`,
      });
  }

  const port = annotations[READINESS_PORT_ANNOTATION];
  if (port !== undefined) {
    const value = /^[0-9]+$/.test(port) ? Number(port) : port;
    if (isPortNumberOrName(value)) result.port = value;
    else
      errors.push({
        annotation: READINESS_PORT_ANNOTATION,
        message: `${JSON.stringify(port)} is neither a port number (1-65535) nor a port name (at most 15 lowercase letters, digits and '-', with a letter)`,
      });
  }

  const sidecars = annotations[SIDECARS_ANNOTATION];
  if (sidecars !== undefined) {
    // Blanks around commas and a trailing comma are forgiven; a malformed name is not.
    for (const name of sidecars.split(',').map((s) => s.trim())) {
      if (name === '') continue;
      if (name.length <= 63 && CONTAINER_NAME.test(name)) {
        if (!result.sidecars.includes(name)) result.sidecars.push(name);
      } else
        errors.push({
          annotation: SIDECARS_ANNOTATION,
          message: `${JSON.stringify(name)} is not a container name (at most 63 lowercase letters, digits and '-')`,
        });
    }
  }

  return errors.length > 0 ? { ok: false, errors } : { ok: true, ...result };
}

// --- drain and grace arithmetic ----------------------------------------------------------------

/** Rounding up x * factor without float noise turning 3.0000000001 into 4. */
function ceilSeconds(value: number): number {
  return Math.ceil(value - 1e-9);
}

/**
 * The drain time: how long in-flight requests may still need after SIGTERM. A trusted
 * observation (at least minSamples requests) times safetyFactor, rounded up; otherwise 0, with
 * the reason, so status says why the grace period fell back to the policy's bounds.
 */
export function computeDrainSeconds(
  spec: GracefulShutdownPolicySpec,
  observation: LatencyObservation,
): DrainTime {
  const { minSamples, safetyFactor } = spec.observedLatency;
  // The policy asks for no observation: whatever a source reports is not used.
  if (spec.observedLatency.source === 'None' || observation.source === 'None') {
    return {
      seconds: 0,
      reason: 'LatencySourceNone',
      basis: 'no latency source',
      message: 'observedLatency.source is None: the drain time counts as 0 s',
    };
  }
  if (!observation.known) {
    if (observation.samples !== undefined && observation.samples < minSamples) {
      return {
        seconds: 0,
        reason: 'TooFewSamples',
        basis: `${observation.samples} requests < minSamples ${minSamples}`,
        message: `${observation.samples} requests observed by ${observation.source}, fewer than minSamples ${minSamples}: the drain time counts as 0 s`,
      };
    }
    return {
      seconds: 0,
      reason: 'LatencyUnknown',
      basis: `latency unknown`,
      message: `no latency from ${observation.source}: ${observation.reason}; the drain time counts as 0 s`,
    };
  }
  if (observation.samples < minSamples) {
    return {
      seconds: 0,
      reason: 'TooFewSamples',
      basis: `${observation.samples} requests < minSamples ${minSamples}`,
      message: `${observation.samples} requests in ${observation.window}, fewer than minSamples ${minSamples}: the drain time counts as 0 s`,
    };
  }
  if (!Number.isFinite(observation.seconds) || observation.seconds < 0) {
    return {
      seconds: 0,
      reason: 'LatencyUnknown',
      basis: 'latency unusable',
      message: `${observation.source} reported an unusable latency (${observation.seconds}): the drain time counts as 0 s`,
    };
  }
  const seconds = Math.min(MAX_SECONDS, ceilSeconds(observation.seconds * safetyFactor));
  const quantile = `p${Math.round(observation.percentile * 1000) / 10}`;
  const atLeast = observation.atLeast ? '>= ' : '';
  return {
    seconds,
    reason: 'ObservedLatency',
    basis: `${quantile} ${atLeast}${significant3(observation.seconds)} s x ${safetyFactor}`,
    message: `${quantile} ${atLeast}${round3(observation.seconds)}s over ${observation.window} (${observation.samples} requests, ${observation.source}) x ${safetyFactor} = ${seconds} s drain${observation.atLeast ? `; the ${quantile} lies above the histogram's largest finite bucket (${round3(observation.seconds)} s): its buckets are too small to tell more` : ''}`,
  };
}

function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}

/** Three significant digits: 21.3, 1.99, 0.0496. */
function significant3(value: number): number {
  return Number(value.toPrecision(3));
}

/**
 * The grace period's arithmetic in one sentence, for status and Events:
 * `grace 47 s = preStop 10 + drain 32 (p99 21.3 s x 1.5) + overhead 5, within [30, 120]`.
 */
export function explainGrace(
  spec: GracefulShutdownPolicySpec,
  drain: DrainTime,
  grace: number,
  kept: boolean,
  killedAt?: number,
): string {
  const g = spec.terminationGracePeriod;
  if (g.strategy === 'Fixed') return `grace ${grace} s (strategy Fixed)`;
  const raw = spec.preStop.seconds + drain.seconds + g.overheadSeconds;
  const sum = `preStop ${spec.preStop.seconds} + drain ${drain.seconds} (${drain.basis}) + overhead ${g.overheadSeconds}`;
  const bounds = `[${g.minSeconds}, ${g.maxSeconds}]`;
  if (kept) return `grace ${grace} s kept (${sum} = ${raw}, within ${bounds})`;
  if (killedAt !== undefined)
    return `grace ${grace} s: ${sum} = ${raw}, raised above the ${killedAt} s at which pods were killed, within ${bounds}`;
  if (grace === raw) return `grace ${grace} s = ${sum}, within ${bounds}`;
  const why =
    raw < g.minSeconds ? `raised to minSeconds` : raw > g.maxSeconds ? `capped at maxSeconds` : 'adjusted';
  return `grace ${grace} s: ${sum} = ${raw}, ${why} of ${bounds}`;
}

/** Fixed: fixedSeconds. Computed: preStop + drain + overhead, clamped to [minSeconds, maxSeconds]. */
export function computeGraceSeconds(spec: GracefulShutdownPolicySpec, drainSeconds: number): number {
  const grace = spec.terminationGracePeriod;
  if (grace.strategy === 'Fixed') return grace.fixedSeconds ?? grace.minSeconds;
  const raw = spec.preStop.seconds + drainSeconds + grace.overheadSeconds;
  return Math.min(grace.maxSeconds, Math.max(grace.minSeconds, raw));
}

/**
 * Hysteresis as in the VPA updater: a value the operator applied earlier is kept while it stays
 * within ±band of the new recommendation and not below floor (preStop + drain), so a small
 * change in observed latency does not restart the workload. Callers pass only a value the
 * operator itself set; a user's value is never "kept" by this rule.
 */
/** A grace period at which pods were killed is followed by one this much longer. */
export const KILLED_GRACE_FACTOR = 1.5;

export function withHysteresis(current: number, recommended: number, band = 0.1, floor = 0): number {
  if (current < floor) return recommended;
  return Math.abs(current - recommended) <= band * recommended ? current : recommended;
}

// --- the plan ----------------------------------------------------------------------------------

export interface DesiredInput {
  policy: ValidPolicy;
  deployment: V1Deployment;
  observation: LatencyObservation;
  facts: ClusterFacts;
  /**
   * What the operator itself last applied to this Deployment (its applied record), undefined
   * when it never applied anything. It decides which existing values are the operator's own:
   * those follow the policy (under server-side apply, omitting a field the operator owns would
   * delete it); any other existing value is the user's.
   */
  previouslyApplied?: ShutdownSettings;
  /**
   * False while a lower latency has not yet held for the stabilization window (the estimate
   * cache decides): a lower recommendation then keeps the applied grace. Omitted: true.
   */
  canLower?: boolean;
  /**
   * Pods of this Deployment were SIGKILLed at the end of this grace period (policy/shutdowns.ts):
   * the app needs longer to drain than that, whatever latency says. The grace period is raised
   * above it (KILLED_GRACE_FACTOR, within maxSeconds), with a ShutdownKilled note.
   */
  shutdownKilled?: { graceSeconds: number };
  /**
   * What trying the probe on a running pod showed (probes/verifier.ts's ProbeVerifier, bound
   * to this Deployment). With readinessProbe.verification Verify, an httpGet probe the container
   * does not already have is not written when its verdict is Unverified (a ProbeUnverified note
   * says why); NoPods or Unreachable: written only where the port is known to speak HTTP, a
   * tcpSocket probe otherwise (decideProbe); Verified or no verdict: written (the controller
   * checks before it writes). Omitted: no verdicts.
   */
  probeVerdict?: ProbeVerdictLookup;
  /**
   * The Service ports that reach a container port of this Deployment's pod template (their
   * names and appProtocols say what the port speaks: protocols.ts). Omitted: no Services.
   */
  servicePorts?: ServicePortLookup;
  /** The readiness probes the operator owns on the Deployment now, by container name. */
  ownProbes?: Readonly<Record<string, V1Probe>>;
  /**
   * The pod template is changing for another reason right now (a template rollout in progress,
   * an UPDATE at admission): the operator's tcpSocket fallback may be replaced by a verified
   * httpGet probe without a restart of its own. Omitted: false.
   */
  templateChanging?: boolean;
}

function declaresPort(container: V1Container, port: number | string): boolean {
  return (container.ports ?? []).some((p) =>
    typeof port === 'number' ? p.containerPort === port : p.name === port,
  );
}

type ServingChoice = { container: V1Container; port: number | string } | { note: PlanNote };

/** "istio-proxy is a known sidecar (Istio)", for each sidecar declaring a port (any, or this one). */
function sidecarsDeclaring(
  containers: V1Container[],
  sidecars: ReadonlyMap<string, string>,
  port: number | string | undefined,
): string[] {
  return containers.flatMap((c) => {
    const why = sidecars.get(c.name);
    const declares = port === undefined ? (c.ports ?? []).length > 0 : declaresPort(c, port);
    return why !== undefined && declares ? [`${c.name} is ${why}`] : [];
  });
}

/**
 * The container that gets the readiness probe: the one declaring the probed port (by number or
 * name); with no port configured, the first container declaring any port, probed on that port.
 * Sidecars (sidecars.ts: annotation, built-in list, policy) are never chosen.
 */
function chooseServingContainer(
  containers: V1Container[],
  sidecars: ReadonlyMap<string, string>,
  port: number | string | undefined,
): ServingChoice {
  const eligible = containers.filter((c) => !sidecars.has(c.name));
  if (port === undefined) {
    const first = eligible.find((c) => (c.ports ?? []).length > 0);
    const firstPort = first?.ports?.[0]?.containerPort;
    if (first !== undefined && firstPort !== undefined) return { container: first, port: firstPort };
    const onSidecars = sidecarsDeclaring(containers, sidecars, undefined);
    return {
      note: {
        reason: 'NoServingPort',
        message: `${onSidecars.length > 0 ? `only sidecars declare ports (${onSidecars.join('; ')})` : 'no container declares a port'}: set readinessProbe.port or the gracefulshutdown.dev/readiness-port annotation`,
      },
    };
  }
  const declaring = eligible.find((c) => declaresPort(c, port));
  if (declaring !== undefined) return { container: declaring, port };
  const onSidecars = sidecarsDeclaring(containers, sidecars, port);
  // A numeric port need not be declared to be served; with one candidate there is no doubt,
  // unless a sidecar declares it.
  const [only, ...others] = eligible;
  if (typeof port === 'number' && only !== undefined && others.length === 0 && onSidecars.length === 0)
    return { container: only, port };
  return {
    note: {
      reason: 'ServingPortNotFound',
      message:
        onSidecars.length > 0
          ? `port ${port} is declared only by a sidecar (${onSidecars.join('; ')}): no readiness probe is written`
          : `no container declares port ${port}: no readiness probe is written`,
    },
  };
}

function resolvePreStopAction(spec: GracefulShutdownPolicySpec, facts: ClusterFacts): 'Sleep' | 'Exec' {
  const { action, seconds } = spec.preStop;
  if (action !== 'Auto') return action;
  return facts.nativeSleep && (seconds > 0 || facts.nativeSleepZero === true) ? 'Sleep' : 'Exec';
}

export function preStopHandler(action: 'Sleep' | 'Exec', seconds: number): V1LifecycleHandler {
  return action === 'Sleep' ? { sleep: { seconds } } : { exec: { command: ['sleep', String(seconds)] } };
}

export function readinessProbe(
  spec: GracefulShutdownPolicySpec,
  path: string,
  port: number | string,
): V1Probe {
  const { periodSeconds, timeoutSeconds, failureThreshold } = spec.readinessProbe;
  return { httpGet: { path, port }, periodSeconds, timeoutSeconds, failureThreshold };
}

function samePort(a: number | string | undefined, b: number | string | undefined): boolean {
  return a !== undefined && b !== undefined && String(a) === String(b);
}

/** What decideProbe reads: the serving container, its probed port and path, and the evidence. */
export interface ProbeQuestion {
  spec: GracefulShutdownPolicySpec;
  container: V1Container;
  port: number | string;
  path: string;
  /** The container's readiness probe as the user has it (the operator's own removed). */
  existing: V1Probe | undefined;
  /** Verdicts of checks on running pods; omitted: none asked (see DesiredInput.probeVerdict). */
  verdict?: ProbeVerdictLookup;
  servicePorts?: ServicePortLookup;
  /** The readiness probe the operator itself has on this container now. */
  ownProbe?: V1Probe;
  templateChanging: boolean;
}

export interface ProbeDecision {
  /** The probe to write; undefined: none (a note says why). */
  probe?: V1Probe;
  recommended?: NonNullable<ShutdownSettings['readinessProbe']>;
  notes: PlanNote[];
  /** The httpGet probe owed a check on a running pod (the fallback's replacement, no verdict yet). */
  check?: { path: string; port: number | string };
}

/**
 * Which readiness probe fits the port (docs/policy.md, "Which probe"): none on UDP or SCTP;
 * grpc (readinessProbe.grpcHealthService) or tcpSocket where the evidence says another protocol
 * than HTTP; httpGet where it says HTTP, where the user's own liveness or startup probe GETs that
 * port, with verification Trust, or where a running pod answered the GET. Where no pod could
 * answer (NoPods, Unreachable) and nothing says HTTP, tcpSocket: never a blind httpGet. The
 * operator's own tcpSocket probe written for that reason stays until the pod template changes
 * for another reason (templateChanging): replacing it alone would restart every pod.
 */
export function decideProbe(q: ProbeQuestion): ProbeDecision {
  const { spec, container, port, path } = q;
  const { periodSeconds, timeoutSeconds, failureThreshold } = spec.readinessProbe;
  const timing = { periodSeconds, timeoutSeconds, failureThreshold };
  const declared = findContainerPort(container, port);
  const number = portNumber(port, declared);
  const services =
    number === undefined
      ? []
      : (q.servicePorts?.({ containerPort: number, ...(declared?.name ? { name: declared.name } : {}) }) ??
        []);
  const protocol = classifyPort(port, declared, services);
  const where = `port ${port}`;
  const httpGet = readinessProbe(spec, path, port);
  const tcpSocket: V1Probe = { tcpSocket: { port }, ...timing };

  if (protocol.class === 'notTcp')
    return {
      notes: [
        {
          reason: 'ProbeNotPossible',
          message: `${protocol.evidence}: no readiness probe can pass there (the kubelet's probes connect over TCP); none is written`,
        },
      ],
    };
  if (protocol.class === 'grpc' || protocol.class === 'tcp') {
    if (protocol.class === 'grpc' && spec.readinessProbe.grpcHealthService && number !== undefined)
      return {
        probe: { grpc: { port: number }, ...timing },
        recommended: { kind: 'grpc', port: number },
        notes: [
          {
            reason: 'ProbeKind',
            message: `${protocol.evidence}: a grpc probe on port ${number} (the standard gRPC health service, readinessProbe.grpcHealthService) instead of httpGet ${path}`,
          },
        ],
      };
    const why =
      protocol.class === 'grpc'
        ? ' (readinessProbe.grpcHealthService is false: set it true for a grpc probe where the app serves grpc.health.v1.Health)'
        : '';
    return {
      probe: tcpSocket,
      recommended: { kind: 'tcpSocket', port },
      notes: [
        {
          reason: 'ProbeKind',
          message: `${protocol.evidence}: a tcpSocket probe on ${where} instead of httpGet ${path}${why}`,
        },
      ],
    };
  }

  const recommended = { path, port };
  // Evidence that the port speaks HTTP: its name or a Service's appProtocol, the user's own
  // HTTP liveness or startup probe on it, or the policy trusting the probe.
  const httpEvidence =
    protocol.class === 'http'
      ? protocol.evidence
      : (httpProbeOnPort(container, port) ??
        (spec.readinessProbe.verification === 'Trust' ? 'readinessProbe.verification is Trust' : undefined));
  if (spec.readinessProbe.verification !== 'Verify' || probeSatisfies(q.existing, httpGet))
    return { probe: httpGet, recommended, notes: [] };

  const verdict = q.verdict?.(container.name, path, port);
  if (verdict?.state === 'Unverified')
    return {
      recommended,
      notes: [
        {
          reason: 'ProbeUnverified',
          message: `${verdict.message}: no readiness probe is written (readinessProbe.verification is Verify)`,
        },
      ],
    };
  // No pod answered: NoPods (none runs: new, scaled to zero, at admission), Unreachable (none
  // could be connected to). Without evidence of HTTP the GET would be blind: tcpSocket instead.
  if (verdict?.state === 'NoPods' || verdict?.state === 'Unreachable') {
    if (httpEvidence !== undefined) {
      const note =
        verdict.state === 'Unreachable'
          ? [
              {
                reason: 'ProbeUnreachable',
                message: `${verdict.message}: httpGet ${path} is written unverified (${httpEvidence})`,
              },
            ]
          : [];
      return { probe: httpGet, recommended, notes: note };
    }
    return {
      probe: tcpSocket,
      recommended: { kind: 'tcpSocket', port },
      // Once pods run, the httpGet probe is checked on them (controllers/probe-recheck.ts).
      check: { path, port },
      notes: [
        {
          reason: 'ProbeFallback',
          message: `${verdict.message}; nothing says ${where} speaks HTTP (its name, a Service's appProtocol, an httpGet liveness or startup probe): a tcpSocket probe is written instead of httpGet ${path}, which is checked once pods run and replaces it with the next pod-template change`,
        },
      ],
    };
  }
  // Verified, or not asked yet (the controller checks on a running pod before it writes): the
  // httpGet probe. The operator's own tcpSocket fallback on this port stays until the template
  // changes anyway.
  const own = q.ownProbe?.tcpSocket;
  if (own !== undefined && samePort(own.port, port) && !q.templateChanging)
    return {
      recommended,
      ...(verdict?.state === 'Verified' ? {} : { check: { path, port } }),
      notes: [
        {
          reason: 'ProbeUpgradeDeferred',
          message: `the operator's tcpSocket probe on ${where} stays until the pod template next changes: httpGet ${path} ${
            verdict?.state === 'Verified'
              ? `(${verdict.tried} succeeded) replaces it then`
              : 'is checked on a running pod then, and replaces it if answered'
          }`,
        },
      ],
    };
  return { probe: httpGet, recommended, notes: [] };
}

/** Computes the fields the operator writes to the Deployment's pod template. */
export function desiredSettings(input: DesiredInput): DesiredResult {
  const { policy, deployment, observation, facts, previouslyApplied } = input;
  const { spec } = policy;
  const overrides = readAnnotationOverrides(deployment);
  if (!overrides.ok) return { ok: false, errors: overrides.errors };

  const containers = regularContainers(deployment);
  const sidecars = findSidecars(containers, overrides.sidecars, spec.sidecars);
  const notes: PlanNote[] = [];
  const plans = new Map<string, ContainerPlan>();
  const planFor = (name: string): ContainerPlan => {
    let plan = plans.get(name);
    if (plan === undefined) {
      plan = { name };
      plans.set(name, plan);
    }
    return plan;
  };
  const recommended: ShutdownSettings = {};

  // Readiness probe: the serving container only.
  let servingContainer: string | undefined;
  let probeCheck: ShutdownPlan['probeCheck'];
  const servingPort = overrides.port ?? spec.readinessProbe.port;
  if (spec.readinessProbe.inject === 'Never') {
    // No probe to write, but the prestop-seconds annotation mirrors the serving container's
    // hook: choose it all the same, silently (the notes are about the probe).
    if (spec.preStop.inject !== 'Never') {
      const choice = chooseServingContainer(containers, sidecars, servingPort);
      if (!('note' in choice)) servingContainer = choice.container.name;
    }
  } else {
    const path = overrides.path ?? spec.readinessProbe.path;
    const choice = chooseServingContainer(containers, sidecars, servingPort);
    if ('note' in choice) notes.push(choice.note);
    else {
      servingContainer = choice.container.name;
      const existing = choice.container.readinessProbe;
      const question: ProbeQuestion = {
        spec,
        container: choice.container,
        port: choice.port,
        path,
        existing,
        ...(input.servicePorts ? { servicePorts: input.servicePorts } : {}),
        ...(input.ownProbes?.[choice.container.name]
          ? { ownProbe: input.ownProbes[choice.container.name] }
          : {}),
        templateChanging: input.templateChanging === true,
      };
      // Without verdicts: what the probe would be, to tell whether an existing one is the operator's.
      const tentative = decideProbe(question);
      let decided = tentative;
      const previous = previouslyApplied?.readinessProbe;
      const ours =
        existing !== undefined &&
        ((tentative.probe !== undefined && probeSatisfies(existing, tentative.probe)) ||
          (previous?.path !== undefined &&
            existing.httpGet?.path === previous.path &&
            samePort(existing.httpGet?.port, previous.port)));
      if (spec.readinessProbe.inject === 'Override' || existing === undefined || ours) {
        if (input.probeVerdict) decided = decideProbe({ ...question, verdict: input.probeVerdict });
        notes.push(...decided.notes);
        if (decided.probe) planFor(choice.container.name).readinessProbe = decided.probe;
        if (decided.check) probeCheck = { container: choice.container.name, ...decided.check };
      }
      if (decided.recommended) recommended.readinessProbe = decided.recommended;
    }
  }

  // preStop: every regular container except marked sidecars.
  let preStopInEffect: number | undefined;
  const countPreStop = (seconds: number | undefined) => {
    if (seconds !== undefined) preStopInEffect = Math.max(preStopInEffect ?? 0, seconds);
  };
  const action = resolvePreStopAction(spec, facts);
  const handler = preStopHandler(action, spec.preStop.seconds);
  if (spec.preStop.inject !== 'Never') recommended.preStop = { action, seconds: spec.preStop.seconds };
  for (const container of containers) {
    const existing = container.lifecycle?.preStop;
    let write = false;
    if (spec.preStop.inject !== 'Never' && !sidecars.has(container.name)) {
      const previous = previouslyApplied?.preStop;
      const summary = preStopSummary(existing);
      const ours =
        existing !== undefined &&
        (handlerSatisfies(existing, handler) ||
          (previous !== undefined &&
            summary?.action === previous.action &&
            summary.seconds === previous.seconds));
      write = spec.preStop.inject === 'Override' || existing === undefined || ours;
    }
    if (write) {
      planFor(container.name).preStop = handler;
      countPreStop(spec.preStop.seconds);
    } else countPreStop(preStopSummary(existing)?.seconds);
  }
  // A native sidecar's hook runs within the same grace period.
  for (const sidecar of nativeSidecars(deployment))
    countPreStop(preStopSummary(sidecar.lifecycle?.preStop)?.seconds);

  // Grace period.
  const drain = computeDrainSeconds(spec, observation);
  const graceSpec = spec.terminationGracePeriod;
  let grace = computeGraceSeconds(spec, drain.seconds);
  /** The operator's earlier value stays (hysteresis, or a lowering held back). */
  let kept = false;
  /** The grace period at which pods were killed, when that raised this one. */
  let raisedForKill: number | undefined;
  const previousGrace = previouslyApplied?.terminationGracePeriodSeconds;
  if (
    graceSpec.strategy === 'Computed' &&
    previousGrace !== undefined &&
    previousGrace >= graceSpec.minSeconds &&
    previousGrace <= graceSpec.maxSeconds
  ) {
    const recommendation = grace;
    grace = withHysteresis(previousGrace, grace, 0.1, spec.preStop.seconds + drain.seconds);
    kept = grace === previousGrace && grace !== recommendation;
    // Lowering restarts pods for a smaller value. With a latency source: only on a trusted
    // observation, and only once the estimate has been stable for the stabilization window; an
    // unknown, stale or failing source never lowers what the operator applied. Raising is always
    // allowed, and without a source (None) the policy alone decides.
    if (grace < previousGrace && drain.reason !== 'LatencySourceNone') {
      const trusted = drain.reason === 'ObservedLatency';
      if (!trusted || input.canLower === false) {
        notes.push({
          reason: 'GraceKept',
          message: trusted
            ? `the recommendation ${grace} s is lower than the applied ${previousGrace} s, which is kept until the lower latency has held for observedLatency.stabilizationWindow`
            : `the applied ${previousGrace} s is kept: ${drain.message}, and an unknown latency never lowers a grace period`,
        });
        grace = previousGrace;
        kept = true;
      }
    }
  }
  // Pods were killed at a grace period: the next one must be longer, even if latency says the
  // drain fits (the app may do more than answer requests). Raising is always allowed.
  const killedAt = input.shutdownKilled?.graceSeconds;
  if (killedAt !== undefined && graceSpec.strategy === 'Computed' && grace <= killedAt) {
    const raised = Math.min(graceSpec.maxSeconds, Math.ceil(killedAt * KILLED_GRACE_FACTOR));
    notes.push({
      reason: 'ShutdownKilled',
      message:
        raised > killedAt
          ? `pods were killed at the end of a ${killedAt} s grace period: raised to ${raised} s (x${KILLED_GRACE_FACTOR}${raised === graceSpec.maxSeconds ? `, capped at maxSeconds ${graceSpec.maxSeconds}` : ''})`
          : `pods were killed at the end of a ${killedAt} s grace period, and maxSeconds ${graceSpec.maxSeconds} allows no longer one`,
    });
    if (raised > grace) {
      grace = raised;
      kept = false;
      raisedForKill = killedAt;
    }
  }
  // The countdown starts before preStop runs: a hook in effect (ours or a user's longer one)
  // must end before SIGKILL, even if that exceeds maxSeconds.
  if (preStopInEffect !== undefined && grace < preStopInEffect + 1) {
    grace = preStopInEffect + 1;
    notes.push({
      reason: 'GraceRaisedForPreStop',
      message: `a preStop hook waits ${preStopInEffect} s: the grace period is raised to ${grace} s`,
    });
  }
  recommended.terminationGracePeriodSeconds = grace;

  const current = currentGraceSeconds(deployment);
  const currentIsOurs = previousGrace !== undefined && previousGrace === current;
  let terminationGracePeriodSeconds: number | undefined;
  // With a latency source that does not (yet) give a trusted latency, a lower value than the
  // Deployment has is never written, even under Override: the drain time is unknown, not zero.
  const untrusted =
    graceSpec.strategy === 'Computed' &&
    (drain.reason === 'TooFewSamples' || drain.reason === 'LatencyUnknown');
  if (untrusted && grace < current && !currentIsOurs) {
    notes.push({
      reason: 'GraceKept',
      message: `terminationGracePeriodSeconds ${current} is kept: ${drain.message}, and an unknown latency never lowers a grace period`,
    });
  } else if (graceSpec.inject === 'Override') terminationGracePeriodSeconds = grace;
  else if (graceSpec.inject === 'IfShorter') {
    // A longer grace period the user chose is kept; the operator's own value follows the policy.
    if (current < grace || currentIsOurs) terminationGracePeriodSeconds = grace;
  } else if (preStopInEffect !== undefined && current <= preStopInEffect) {
    notes.push({
      reason: 'GraceShorterThanPreStop',
      message: `terminationGracePeriodSeconds ${current} does not exceed the preStop wait of ${preStopInEffect} s, and terminationGracePeriod.inject is Never`,
    });
  }

  const ordered = containers.flatMap((c) => {
    const plan = plans.get(c.name);
    return plan === undefined ? [] : [plan];
  });
  return {
    ok: true,
    plan: {
      ...(terminationGracePeriodSeconds === undefined ? {} : { terminationGracePeriodSeconds }),
      containers: ordered,
      recommended,
      drain,
      graceExplanation: explainGrace(spec, drain, grace, kept, raisedForKill),
      ...(servingContainer === undefined ? {} : { servingContainer }),
      notes,
      ...(probeCheck ? { probeCheck } : {}),
    },
  };
}
