// Plain data shared by the policy arithmetic. Nothing here does I/O: the controllers read the
// cache, call these functions and write what they return.
import type { V1LifecycleHandler, V1Probe } from '@kubernetes/client-node';
import type {
  GracefulShutdownPolicySpec,
  LatencyPresetName,
  LatencySource,
  ShutdownSettings,
} from '../api/policy.ts';
import type { ServicePortFacts } from './protocols.ts';

/** A policy whose spec parsed: every default filled in by parsePolicySpec. */
export interface ValidPolicy {
  name: string;
  generation: number;
  spec: GracefulShutdownPolicySpec;
}

/** What a latency source reports for one Deployment: a percentile it trusts, or why not. */
export type LatencyObservation =
  | {
      known: true;
      seconds: number;
      samples: number;
      percentile: number;
      window: string;
      source: LatencySource;
      /**
       * The percentile fell in the histogram's +Inf bucket: the latency is at least `seconds`
       * (the largest finite bucket bound), and the buckets are too small to say more.
       */
      atLeast?: boolean;
      /** The preset whose histogram was read (latency/presets.ts); undefined for a metric or query. */
      preset?: LatencyPresetName;
      /** What to know about that histogram, said in status (Linkerd's is time to first byte). */
      caveat?: string;
    }
  | {
      known: false;
      reason: string;
      source: LatencySource;
      samples?: number;
      /** The source could not be asked (unreachable, error, timeout), as opposed to no data. */
      unavailable?: boolean;
    };

/** What the cluster supports, judged from the apiserver's version. */
export interface ClusterFacts {
  /** lifecycle.preStop.sleep is accepted (beta and on by default from 1.30). */
  nativeSleep: boolean;
  /** lifecycle.preStop.sleep.seconds may be 0 (on by default from 1.33). Omitted: false. */
  nativeSleepZero?: boolean;
}

/** A per-Deployment annotation that could not be used. */
export interface AnnotationError {
  annotation: string;
  message: string;
}

/** Why a setting was or was not computed, for status and Events. */
export interface PlanNote {
  reason: string;
  message: string;
}

export interface DrainTime {
  seconds: number;
  /** The drain in a few words for the grace sentence: `p99 21.3 s x 1.5`, `no latency source`. */
  basis: string;
  /** ObservedLatency, LatencyUnknown, TooFewSamples or LatencySourceNone. */
  reason: string;
  message: string;
}

/**
 * What requesting a readiness probe's path on a running pod showed (probes/verifier.ts):
 * Verified (answered 2xx/3xx), Unverified (answered otherwise, refused, timed out: the probe
 * would keep new pods from ever becoming Ready), or NoPods (no running pod to ask: the httpGet
 * probe is injected only where the port is known to speak HTTP, a tcpSocket one otherwise). `tried` and `message` say exactly which request went where and what happened.
 */
export type ProbeVerdict =
  | { state: 'Verified'; tried: string }
  | { state: 'Unverified'; tried: string; message: string }
  | { state: 'NoPods'; message: string }
  /** Pods run, but only for a moment: an app still starting is no answer. Asked again soon. */
  | { state: 'Pending'; message: string }
  /**
   * No pod could be connected to from the operator (NetworkPolicy, another network): like
   * NoPods, the httpGet probe is written unverified only where the port is known to speak HTTP.
   */
  | { state: 'Unreachable'; message: string };

/**
 * The verdict known for the probe that would be written to one container of the Deployment
 * being planned (path and port as in its httpGet), or undefined when none is known yet.
 * Synchronous: planning reads results, it never waits for a check.
 */
export type ProbeVerdictLookup = (
  container: string,
  path: string,
  port: number | string,
) => ProbeVerdict | undefined;

/**
 * The Service ports (of the Deployment's namespace, selecting its pod template) that reach one
 * container port, given by number and name: what they say about its protocol (protocols.ts).
 */
export type ServicePortLookup = (port: {
  containerPort: number;
  name?: string;
}) => readonly ServicePortFacts[];

/** What the operator writes into one container; undefined fields are left alone. */
export interface ContainerPlan {
  name: string;
  readinessProbe?: V1Probe;
  preStop?: V1LifecycleHandler;
}

/**
 * The fields the operator will write to one Deployment's pod template. Undefined means "not
 * written by the operator": under server-side apply that field is neither set nor owned.
 */
export interface ShutdownPlan {
  terminationGracePeriodSeconds?: number;
  /** One entry per container the plan writes to, in pod order; containers left alone are absent. */
  containers: ContainerPlan[];
  /** What the policy computes for this Deployment, whether or not it is written (status `recommended`). */
  recommended: ShutdownSettings;
  drain: DrainTime;
  /**
   * How the recommended grace period was reached, for status and Events, e.g.
   * `grace 47 s = preStop 10 + drain 32 (p99 21.3 s x 1.5) + overhead 5, within [30, 120]`.
   */
  graceExplanation: string;
  /**
   * The serving container: the one that gets the readiness probe, and whose preStop the
   * prestop-seconds annotation mirrors. Chosen even when the probe is not written (inject
   * Never, as long as the preStop is not Never too); undefined when none could be chosen.
   */
  servingContainer?: string;
  /**
   * Pod-template annotations the plan writes: the mirrors of terminationGracePeriodSeconds and
   * of the serving container's preStop seconds (GRACE_PERIOD_SECONDS_ANNOTATION,
   * PRESTOP_SECONDS_ANNOTATION), for the app to read through the downward API. desiredSettings
   * leaves it unset; retainOwnedFields and withMirrorAnnotations (ownership.ts) fill it in.
   */
  annotations?: Record<string, string>;
  /** Things the plan could not do, e.g. no container declares the probed port. */
  notes: PlanNote[];
  /**
   * The httpGet probe that would replace the operator's tcpSocket fallback once a running pod
   * answers it, while no verdict says so (ProbeFallback: no pod could answer; ProbeUpgradeDeferred:
   * not asked yet): the check a replica runs in the background once pods run
   * (controllers/probe-recheck.ts), so that the next pod-template change can take it.
   */
  probeCheck?: { container: string; path: string; port: number | string };
}

export type DesiredResult = { ok: true; plan: ShutdownPlan } | { ok: false; errors: AnnotationError[] };

/** A Deployment's latency estimate, as the leader's refresher publishes it (latency/estimates.ts). */
export interface Estimate {
  /** What planning uses. */
  published: LatencyObservation;
  /** The source's latest answer; differs from `published` when that is kept (stale, stabilizing). */
  latest: LatencyObservation;
  /** When `latest` arrived (ms since the epoch). */
  refreshedAt: number;
  /**
   * When the published latency was observed; it moves only when the published value changes
   * in a way planning sees, so status does not churn with every refresh.
   */
  publishedAt: number;
  /** The published latency is older news: the latest answer was not a known latency. */
  stale: boolean;
  /** The published latency has at least minSamples requests: planning uses it. */
  trusted: boolean;
  /**
   * A lower grace period may be applied: this estimate has been followed for the whole
   * stabilization window (after an operator restart or a leader change, not before).
   */
  canLower: boolean;
}
