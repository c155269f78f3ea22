// `gsp audit`, the pure part: manifests and policies in, findings out. A Deployment a policy
// selects gets the verdict the operator would give (the same match, planning and verdict code);
// every pod template (workloads.ts: Deployments, StatefulSets, DaemonSets, Jobs, Pods, Argo
// Rollouts...) is also checked for the classic shutdown mistakes, the policy or not.
import type { V1Container, V1Deployment, V1PodSpec, V1Probe } from '@kubernetes/client-node';
import { READINESS_PATH_ANNOTATION } from '../api/annotations.ts';
import { API_VERSION, KIND, parsePolicySpec } from '../api/policy.ts';
import { clusterFacts, readAnnotationOverrides, type ServerVersion } from '../policy/desired.ts';
import { describeChange } from '../policy/diff.ts';
import { type Evaluation, evaluate, verdictFor } from '../policy/evaluate.ts';
import { policySelects } from '../policy/match.ts';
import { type ProbeVerdictReader, planWorkload } from '../policy/plan.ts';
import { DEFAULT_GRACE_SECONDS, preStopSummary, probesEqual } from '../policy/podspec.ts';
import { findSidecars } from '../policy/sidecars.ts';
import type { Estimate, ValidPolicy } from '../policy/types.ts';
import { isRecord } from '../util/is-record.ts';
import type { FieldPath, Manifest } from './manifests.ts';
import { classify, isDeploymentKind, parsePath, pathText, type WorkloadKind } from './workloads.ts';

export type Severity = 'error' | 'warning' | 'note';
export const SEVERITIES: readonly Severity[] = ['note', 'warning', 'error'];

export const RULES = {
  MisplacedTerminationGracePeriod: {
    severity: 'error',
    description: 'terminationGracePeriodSeconds is set on a container, where Kubernetes ignores it',
  },
  PreStopNotShorterThanGrace: {
    severity: 'error',
    description:
      'the preStop hook waits as long as the grace period or longer: the container is killed before it can drain',
  },
  ShellPreStopWithoutShell: {
    severity: 'warning',
    description: 'the preStop hook runs a shell, and the image looks like one without a shell (best effort)',
  },
  ReadinessProbeMissing: {
    severity: 'warning',
    description:
      'a container serving a port has no readiness probe: endpoints do not learn it is shutting down',
  },
  IdenticalReadinessAndLiveness: {
    severity: 'warning',
    description:
      'the readiness and liveness probes are the same: when the app fails readiness to drain, liveness fails too and the kubelet restarts it mid-drain',
  },
  PolicyNonCompliant: {
    severity: 'error',
    description: 'the Deployment does not have the settings its GracefulShutdownPolicy recommends',
  },
  PolicyUnknown: {
    severity: 'error',
    description:
      "the Deployment's gracefulshutdown.dev annotations cannot be used: the policy cannot plan it",
  },
  PolicyNotApplicable: {
    severity: 'note',
    description:
      "a policy's selector matches a workload that is not a Deployment: the operator acts on Deployments only, so no policy verdict is given",
  },
  InputUnreadable: {
    severity: 'error',
    description: 'a file or directory named on the command line cannot be read; the others are audited',
  },
  InputSkipped: {
    severity: 'note',
    description:
      'a path inside a directory audited is not read: a symlink out of it, a FIFO or device, or a directory cycle',
  },
  InputInvalidYaml: {
    severity: 'error',
    description: 'a document is not valid YAML or JSON: it is not audited; the rest of the file is',
  },
  InputNotAnObject: {
    severity: 'warning',
    description: 'a document is not a Kubernetes object (a mapping with kind and apiVersion): it is skipped',
  },
  InputDuplicateKey: {
    severity: 'warning',
    description: 'a key is given twice: the last value is read, as kubectl does',
  },
  InputMalformedWorkload: {
    severity: 'error',
    description:
      'a Deployment whose pod template does not have the shape Kubernetes requires (containers a list of objects): it is not audited',
  },
} as const satisfies Record<string, { severity: Severity; description: string }>;

export type RuleId = keyof typeof RULES;

export interface Finding {
  rule: RuleId;
  severity: Severity;
  /** The workload it is about; undefined for a finding about the input itself. */
  workload?: { kind: string; namespace: string; name: string };
  policy?: string;
  message: string;
  /** What to change, in a sentence. */
  fix: string;
  source: string;
  /** 1-based line of the field the finding is about (of the object, when it has no field). */
  line: number;
  /** 1-based column of that field, where known. */
  column?: number;
}

export interface WorkloadResult {
  kind: string;
  apiVersion: string;
  namespace: string;
  name: string;
  source: string;
  line: number;
  /** The policy that governs it (Deployments only); undefined when none selects it. */
  policy?: string;
  /** The operator's verdict (Compliant, NonCompliant, Exempt, Unknown); undefined without a policy. */
  verdict?: string;
  reason?: string;
  /** The other policies selecting it, as their statuses list it (Exempt, OtherPolicyWins). */
  otherPolicies?: { policy: string; verdict: string; reason: string }[];
}

export interface AuditResult {
  workloads: WorkloadResult[];
  findings: Finding[];
  policies: string[];
  /** What was read and what was skipped, by kind and apiVersion. */
  inventory: InventoryRow[];
}

export class PolicyError extends Error {
  readonly source: string;
  readonly line: number;
  constructor(source: string, line: number, message: string) {
    super(`${source}:${line}: ${message}`);
    this.name = 'PolicyError';
    this.source = source;
    this.line = line;
  }
}

export interface AuditOptions {
  /** For objects without metadata.namespace (kubectl's default namespace). */
  namespace: string;
  /** The cluster the manifests are for: decides the preStop action (native sleep from 1.30). */
  kubernetesVersion: string;
}

const isPolicy = (m: Manifest) => m.object.apiVersion === API_VERSION && m.object.kind === KIND;

/** A problem with the input as a finding: the run goes on without that part. */
export function inputFinding(problem: {
  source: string;
  line: number;
  rule: Extract<RuleId, `Input${string}`>;
  message: string;
}): Finding {
  const fixes: Record<typeof problem.rule, string> = {
    InputUnreadable: 'name files and directories that exist and can be read',
    InputSkipped: 'name the target itself if it should be audited',
    InputInvalidYaml:
      'correct the YAML, or leave templates out (render them first: helm template, kustomize build)',
    InputNotAnObject: 'leave data files out of the manifests audited',
    InputDuplicateKey: 'keep one of the two keys',
    InputMalformedWorkload: 'correct the field (kubectl apply --dry-run=server says the same)',
  };
  return {
    rule: problem.rule,
    severity: RULES[problem.rule].severity,
    message: problem.message,
    fix: fixes[problem.rule],
    source: problem.source,
    line: problem.line,
  };
}

/** The policies among the manifests; an invalid one is a PolicyError naming its field. */
export function readPolicies(manifests: Manifest[]): ValidPolicy[] {
  return manifests.filter(isPolicy).map((m) => {
    const metadata = (m.object.metadata ?? {}) as { name?: string; generation?: number };
    const name = metadata.name ?? '';
    const parsed = parsePolicySpec(m.object.spec);
    if (!parsed.ok)
      throw new PolicyError(
        m.source,
        m.line,
        `policy ${name}: ${parsed.errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`,
      );
    return { name, generation: metadata.generation ?? 1, spec: parsed.value };
  });
}

/** Offline there is no observed latency: planning says so instead of "waiting for a refresh". */
function offlineEstimates(policy: ValidPolicy): { get(): Estimate | undefined } {
  const source = policy.spec.observedLatency.source;
  const unknown = { known: false as const, source, reason: 'gsp audit runs offline: no observed latency' };
  const estimate: Estimate = {
    published: unknown,
    latest: unknown,
    refreshedAt: 0,
    publishedAt: 0,
    stale: false,
    trusted: false,
    canLower: false,
  };
  return { get: () => (source === 'None' ? undefined : estimate) };
}

const SHELL = /(^|\/)(ba|da|z)?sh$/;

/**
 * The shell an image has, as far as its name tells: 'none' for distroless, scratch-based static
 * images and Chainguard's production images; 'busybox' for distroless `:debug` images (BusyBox at
 * /busybox/sh, on the image's PATH, and no /bin/sh); undefined when nothing says (assumed to have
 * one). Chainguard's `-dev` tags have a shell.
 */
export function imageShell(image: string): 'none' | 'busybox' | undefined {
  const ref = image.toLowerCase().replace(/@sha256:[0-9a-f]+$/, '');
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  const [name, tag] = colon > slash ? [ref.slice(0, colon), ref.slice(colon + 1)] : [ref, ''];
  if (/(^|\/)distroless\//.test(name)) return /(^|-)debug(-|$)/.test(tag) ? 'busybox' : 'none';
  if (/(^|\/)cgr\.dev\/chainguard\//.test(name) || /(^|\/)chainguard\/static$/.test(name))
    return /(^|-)dev(-|$)/.test(tag) ? undefined : 'none';
  if (/(^|\/)scratch$/.test(name) || /static-debian/.test(name)) return 'none';
  return undefined;
}

/** Why a preStop command cannot run in the image, or undefined when it can (or nothing says). */
function shellMissing(command: string, image: string): string | undefined {
  if (!SHELL.test(command)) return undefined;
  const shell = imageShell(image);
  if (shell === 'none') return `${image} looks like an image without a shell`;
  // BusyBox has sh on the PATH (so plain `sh` works), at /busybox/sh, and no bash.
  if (
    shell === 'busybox' &&
    (/(^|\/)(ba|z)sh$/.test(command) || (command.startsWith('/') && !command.startsWith('/busybox/')))
  )
    return `${image} is a distroless debug image: its only shell is BusyBox's, at /busybox/sh`;
  return undefined;
}

/** Where a workload's findings point, and the workload they name. */
type Where = Pick<Finding, 'workload' | 'source' | 'line'>;

/** terminationGracePeriodSeconds set under a container, where Kubernetes has no such field. */
export function misplacedGracePeriods(
  podSpec: V1PodSpec | undefined,
): { list: 'containers' | 'initContainers'; index: number; container: string; value: unknown }[] {
  return (['containers', 'initContainers'] as const).flatMap((list) =>
    ((podSpec?.[list] ?? []) as (V1Container & Record<string, unknown>)[]).flatMap((c, index) =>
      c.terminationGracePeriodSeconds === undefined
        ? []
        : [{ list, index, container: c.name, value: c.terminationGracePeriodSeconds }],
    ),
  );
}

/**
 * The same mistake on a level between the object and its pod spec (a Deployment's spec, its pod
 * template beside the pod spec, a CronJob's jobTemplate): each such level's path and value.
 */
function misplacedAbovePodSpec(
  object: Record<string, unknown>,
  podSpecPath: readonly string[],
): { path: readonly string[]; value: unknown }[] {
  const found: { path: readonly string[]; value: unknown }[] = [];
  let at: unknown = object;
  for (const [i, key] of podSpecPath.slice(0, -1).entries()) {
    at = isRecord(at) ? at[key] : undefined;
    if (!isRecord(at)) break;
    if (at.terminationGracePeriodSeconds !== undefined)
      found.push({ path: podSpecPath.slice(0, i + 1), value: at.terminationGracePeriodSeconds });
  }
  return found;
}

/** What the level at `path` is, in words: "a Deployment spec", "a pod template". */
function levelName(kind: WorkloadKind, path: string): string {
  if (path === 'spec') return `a ${kind.kind} spec`;
  if (path.endsWith('jobTemplate')) return 'a Job template';
  if (path.endsWith('template')) return 'a pod template';
  return 'a Job spec';
}

/** A finding before it is placed: `at` is the path of the field it is about, from the object. */
export type Draft = Finding & { at?: FieldPath };

/** A finding of a rule, at the workload, about the field at `at`. */
function finding(rule: RuleId, where: Where, message: string, fix: string, at?: FieldPath): Draft {
  return { rule, severity: RULES[rule].severity, message, fix, ...where, ...(at ? { at } : {}) };
}

/** The findings with the line and column of their fields, where the manifest can say. */
function place(drafts: Draft[], manifest: Manifest): Finding[] {
  return drafts.map(({ at, ...f }) => {
    if (!at || !manifest.locate) return f;
    const { line, column } = manifest.locate(at);
    return { ...f, line, column };
  });
}

/**
 * Misplaced grace periods, at every level: what a patch is checked for too (a patch is where a
 * grace period is most often added). `podSpec` is undefined for a patch, whose pod keeps the value
 * of the object it patches.
 */
function misplacedFindings(
  object: Record<string, unknown>,
  kind: WorkloadKind,
  podSpec: V1PodSpec | undefined,
  where: Where,
): Draft[] {
  const base = pathText(kind.podSpecPath);
  const field = `${base}.terminationGracePeriodSeconds`;
  const podSpecAt = kind.podSpecPath.reduce<unknown>(
    (at, key) => (isRecord(at) ? at[key] : undefined),
    object,
  );
  const kept = isRecord(podSpecAt) ? (podSpecAt.terminationGracePeriodSeconds ?? undefined) : undefined; // null is unset
  const keeps =
    kept !== undefined
      ? `the pod keeps ${String(kept)} s`
      : podSpec
        ? `the pod keeps ${DEFAULT_GRACE_SECONDS} s`
        : 'the pod keeps the grace period of the object this patches';
  const fix = `move it to ${field}`;
  return [
    ...misplacedGracePeriods(isRecord(podSpecAt) ? (podSpecAt as unknown as V1PodSpec) : undefined).map(
      ({ list, index, container, value }) =>
        finding(
          'MisplacedTerminationGracePeriod',
          where,
          `${base}.${list}[${container}].terminationGracePeriodSeconds: ${JSON.stringify(value)} is not a container field; Kubernetes drops it (or rejects it with strict validation) and ${keeps}`,
          fix,
          [...kind.podSpecPath, list, index, 'terminationGracePeriodSeconds'],
        ),
    ),
    ...misplacedAbovePodSpec(object, kind.podSpecPath).map(({ path, value }) =>
      finding(
        'MisplacedTerminationGracePeriod',
        where,
        `${pathText(path)}.terminationGracePeriodSeconds: ${JSON.stringify(value)} is not a field of ${levelName(kind, pathText(path))}; Kubernetes drops it (or rejects it with strict validation) and ${keeps}`,
        fix,
        [...path, 'terminationGracePeriodSeconds'],
      ),
    ),
  ];
}

/**
 * The classic mistakes in one workload's pod template, read from the manifest as written.
 * `governed`: a policy plans it (its readiness is the policy's verdict, not a rule here).
 */
export function lintPodTemplate(
  object: Record<string, unknown>,
  kind: WorkloadKind,
  podSpec: V1PodSpec,
  where: Where,
  governed: boolean,
  services: readonly ServiceView[] = [],
): Draft[] {
  const findings = misplacedFindings(object, kind, podSpec, where);
  const base = pathText(kind.podSpecPath);
  const grace = podSpec.terminationGracePeriodSeconds ?? DEFAULT_GRACE_SECONDS;
  const containers = podSpec.containers ?? [];
  // Sidecars as the operator knows them (its list, the sidecars annotation): their project
  // manages their readiness, and the operator never writes a probe to them.
  const overrides = readAnnotationOverrides({ metadata: object.metadata } as V1Deployment);
  const sidecars = findSidecars(containers, overrides.ok ? overrides.sidecars : [], {
    names: [],
    images: [],
  });
  const apps = containers.filter((c) => !sidecars.has(c.name));
  // A Service sending traffic to the pods is evidence that they serve, declared ports or not.
  const labels = kind.podSpecPath
    .slice(0, -1)
    .concat('metadata', 'labels')
    .reduce<unknown>((at, key) => (isRecord(at) ? at[key] : undefined), object);
  const behind = services.filter(
    (svc) =>
      svc.namespace === where.workload?.namespace &&
      Object.keys(svc.selector).length > 0 &&
      isRecord(labels) &&
      Object.entries(svc.selector).every(([k, v]) => labels[k] === v),
  );
  for (const [i, container] of containers.entries()) {
    const at = `${base}.containers[${container.name}]`;
    const field = (...rest: (string | number)[]) => [...kind.podSpecPath, 'containers', i, ...rest];
    const add = (rule: RuleId, message: string, fix: string, path: FieldPath) =>
      findings.push(finding(rule, where, message, fix, path));
    const hook = container.lifecycle?.preStop;
    const waits = preStopSummary(hook)?.seconds;
    if (waits !== undefined && waits >= grace)
      add(
        'PreStopNotShorterThanGrace',
        `${at}: preStop waits ${waits} s and terminationGracePeriodSeconds is ${grace} s: the grace period counts from before the hook, so the container is killed before the app gets SIGTERM with time to drain`,
        `set ${base}.terminationGracePeriodSeconds above ${waits} s plus the time requests need to finish`,
        field('lifecycle', 'preStop'),
      );
    const command = hook?.exec?.command?.[0];
    const missing = command === undefined ? undefined : shellMissing(command, container.image ?? '');
    if (missing)
      add(
        'ShellPreStopWithoutShell',
        `${at}: preStop runs ${command}, and ${missing}: the hook fails and the pod stops at once`,
        `use the native sleep action (lifecycle.preStop.sleep.seconds, Kubernetes 1.30+) or a binary the image has`,
        field('lifecycle', 'preStop'),
      );
    // Readiness matters to pods behind a Service; a Job's pods run to completion.
    if (!kind.serves) continue;
    const unprobed = !governed && container.readinessProbe === undefined && !sidecars.has(container.name);
    if (unprobed && (container.ports ?? []).length > 0)
      add(
        'ReadinessProbeMissing',
        `${at} serves port ${container.ports?.[0]?.containerPort} without a readiness probe`,
        `add a readinessProbe (an HTTP path that fails once shutdown begins)`,
        field('ports'),
      );
    else if (unprobed && apps.length === 1 && behind[0] !== undefined) {
      // No declared port, but a Service selects the pods, and this is their one app container.
      const [svc] = behind;
      const target = svc.ports[0]?.targetPort ?? svc.ports[0]?.port;
      add(
        'ReadinessProbeMissing',
        `${at} declares no port, but Service ${svc.name} sends traffic to the pods${target === undefined ? '' : ` (targetPort ${target})`}, and it has no readiness probe`,
        `add a readinessProbe (an HTTP path that fails once shutdown begins), and declare the port`,
        field('name'),
      );
    }
    if (
      container.readinessProbe !== undefined &&
      container.livenessProbe !== undefined &&
      probesEqual(container.readinessProbe, container.livenessProbe)
    )
      add(
        'IdenticalReadinessAndLiveness',
        `${at} probes readiness and liveness the same way: failing readiness to drain would get it restarted`,
        'give liveness its own check that stays healthy while draining (e.g. /healthz beside /readyz), or a higher failureThreshold',
        field('livenessProbe'),
      );
  }
  return findings;
}

/** A Service among the manifests, as far as the audit reads it. */
export interface ServiceView {
  namespace: string;
  name: string;
  selector: Record<string, string>;
  ports: { port?: number; targetPort?: number | string }[];
}

/** The Services among the manifests (namespace filled in as for workloads). */
export function servicesOf(manifests: Manifest[], defaultNamespace: string): ServiceView[] {
  return manifests.flatMap((m) => {
    const { object } = m;
    if (object.apiVersion !== 'v1' || object.kind !== 'Service' || !isRecord(object.spec)) return [];
    const meta = isRecord(object.metadata) ? object.metadata : {};
    const selector = isRecord(object.spec.selector) ? object.spec.selector : {};
    const ports = Array.isArray(object.spec.ports) ? object.spec.ports.filter(isRecord) : [];
    return [
      {
        namespace: typeof meta.namespace === 'string' ? meta.namespace : defaultNamespace,
        name: typeof meta.name === 'string' ? meta.name : '',
        selector: Object.fromEntries(
          Object.entries(selector).filter(([, v]) => typeof v === 'string'),
        ) as Record<string, string>,
        ports: ports.map((p) => ({
          ...(typeof p.port === 'number' ? { port: p.port } : {}),
          ...(typeof p.targetPort === 'number' || typeof p.targetPort === 'string'
            ? { targetPort: p.targetPort }
            : {}),
        })),
      },
    ];
  });
}

/** The labels of the Namespace objects among the manifests, by name. */
export function namespaceLabelsOf(manifests: Manifest[]): Map<string, Record<string, string>> {
  const labels = new Map<string, Record<string, string>>();
  for (const m of manifests)
    if (m.object.apiVersion === 'v1' && m.object.kind === 'Namespace') {
      const metadata = (m.object.metadata ?? {}) as { name?: string; labels?: Record<string, string> };
      if (metadata.name) labels.set(metadata.name, metadata.labels ?? {});
    }
  return labels;
}

export interface Governance {
  /** The Deployment with its namespace filled in. */
  deployment: V1Deployment;
  namespace: string;
  /** Which policy governs it and its plan, as the operator evaluates it (policy/evaluate.ts). */
  evaluation: Evaluation;
}

/**
 * Offline, no pod can be asked: the operator's answer for a Deployment with no running pod (as a
 * manifest is when created through the webhook), so an httpGet probe is planned only where the
 * port is known to speak HTTP, a tcpSocket one otherwise (policy/desired.ts decideProbe).
 */
const OFFLINE_VERDICTS: ProbeVerdictReader = {
  lookup: () => (container, path, port) => ({
    state: 'NoPods',
    message: `offline: no pod of this manifest can be asked GET ${path} on port ${port} of ${container}`,
  }),
};

/** Which policy governs the Deployment and what it plans, as the operator would decide offline. */
export function govern(
  raw: V1Deployment,
  policies: ValidPolicy[],
  options: AuditOptions,
  namespaceLabels: Map<string, Record<string, string>>,
): Governance {
  const namespace = raw.metadata?.namespace ?? options.namespace;
  const deployment: V1Deployment = { ...raw, metadata: { ...raw.metadata, namespace } };
  const labels = { ...namespaceLabels.get(namespace), 'kubernetes.io/metadata.name': namespace };
  const facts = clusterFacts(versionOf(options.kubernetesVersion));
  const evaluation = evaluate(deployment, policies, labels, (d, policy) =>
    planWorkload(d, policy, { estimates: offlineEstimates(policy), facts, probes: OFFLINE_VERDICTS }),
  );
  return { deployment, namespace, evaluation };
}

/** What was read, by kind and apiVersion: the summary's counts. */
export interface InventoryRow {
  kind: string;
  apiVersion: string;
  /** Whole workloads audited. */
  read: number;
  /** Parts of workloads (kustomize patches): checked for misplaced fields only. */
  partial: number;
  /** Objects without a pod template to audit (and malformed workloads, each a finding). */
  skipped: number;
}

function inventoryOf(
  entries: { object: Record<string, unknown>; counted: keyof InventoryRow }[],
): InventoryRow[] {
  const rows = new Map<string, InventoryRow>();
  for (const { object, counted } of entries) {
    const kind = typeof object.kind === 'string' ? object.kind : '(no kind)';
    const apiVersion = typeof object.apiVersion === 'string' ? object.apiVersion : '(no apiVersion)';
    const key = `${kind}\u0000${apiVersion}`;
    const row = rows.get(key) ?? { kind, apiVersion, read: 0, partial: 0, skipped: 0 };
    rows.set(key, row);
    if (counted === 'read' || counted === 'partial' || counted === 'skipped') row[counted]++;
  }
  return [...rows.values()].sort(
    (a, b) => a.kind.localeCompare(b.kind) || a.apiVersion.localeCompare(b.apiVersion),
  );
}

/** A Deployment's row and policy findings: the verdict of the policy that governs it, as the operator gives it. */
function auditDeployment(
  raw: V1Deployment,
  row: WorkloadResult,
  where: Where,
  policies: ValidPolicy[],
  options: AuditOptions,
  namespaceLabels: Map<string, Record<string, string>>,
): { findings: Draft[]; governed: boolean } {
  const findings: Draft[] = [];
  const { deployment, evaluation } = govern(raw, policies, options, namespaceLabels);
  // The verdict of the policy that governs it (or, opted out, of the first selecting it), as
  // that policy's status would list it; the other selecting policies' verdicts beside it.
  const governing =
    evaluation.kind === 'OptedOut'
      ? evaluation.policies[0]
      : evaluation.kind === 'Unmatched'
        ? undefined
        : evaluation.policy;
  const verdict = governing && verdictFor(deployment, evaluation, governing.name);
  if (governing && verdict)
    Object.assign(row, { policy: governing.name, verdict: verdict.verdict, reason: verdict.reason });
  if (evaluation.kind !== 'InvalidAnnotations' && evaluation.kind !== 'Planned')
    return { findings, governed: false };
  const others = evaluation.losers.flatMap((loser) => {
    const theirs = verdictFor(deployment, evaluation, loser.name);
    return theirs ? [{ policy: loser.name, verdict: theirs.verdict, reason: theirs.reason ?? '' }] : [];
  });
  if (others.length > 0) row.otherPolicies = others;
  const { policy } = evaluation;
  if (evaluation.kind === 'InvalidAnnotations')
    findings.push({
      ...finding(
        'PolicyUnknown',
        where,
        verdict?.message ?? verdict?.reason ?? 'invalid annotations',
        'correct the annotation',
        ['metadata', 'annotations'],
      ),
      policy: policy.name,
    });
  if (evaluation.kind === 'Planned' && verdict?.verdict === 'NonCompliant') {
    const { planned } = evaluation;
    findings.push({
      ...finding(
        'PolicyNonCompliant',
        where,
        `${verdict.reason}: ${planned.diff.fields.map((c) => describeChange(c, false)).join('; ') || verdict.message}${unverifiedPaths(planned)}`,
        `${planned.plan.graceExplanation}${policy.spec.mode === 'Enforce' ? '; in Enforce the operator sets these at admission' : ''}`,
        ['spec', 'template', 'spec'],
      ),
      policy: policy.name,
    });
  }
  return { findings, governed: true };
}

/**
 * Offline no pod can be asked whether it answers the readiness path the plan recommends (in the
 * cluster the operator asks a running pod before it relies on it): said, for each such probe.
 */
function unverifiedPaths(planned: {
  plan: { containers: { name: string; readinessProbe?: V1Probe }[] };
}): string {
  const paths = planned.plan.containers.flatMap((c) => {
    const get = c.readinessProbe?.httpGet;
    return get ? [`GET ${get.path ?? '/'} on port ${String(get.port)} of ${c.name}`] : [];
  });
  return paths.length === 0
    ? ''
    : ` (not verified offline: ${paths.join(', ')}; make sure the app answers it with 2xx, or name the path with the ${READINESS_PATH_ANNOTATION} annotation)`;
}

export function audit(manifests: Manifest[], policies: ValidPolicy[], options: AuditOptions): AuditResult {
  const namespaceLabels = namespaceLabelsOf(manifests);
  const services = servicesOf(manifests, options.namespace);
  const result: AuditResult = {
    workloads: [],
    findings: [],
    policies: policies.map((p) => p.name),
    inventory: [],
  };
  const counted: { object: Record<string, unknown>; counted: keyof InventoryRow }[] = [];
  for (const m of manifests) {
    const c = classify(m.object, m.patch === true);
    counted.push({
      object: m.object,
      counted: c.kind === 'Workload' ? 'read' : c.kind === 'Partial' ? 'partial' : 'skipped',
    });
    if (c.kind === 'Other' || c.kind === 'NoTemplate') continue;
    const meta = isRecord(m.object.metadata) ? m.object.metadata : {};
    const name = typeof meta.name === 'string' ? meta.name : '';
    const namespace = typeof meta.namespace === 'string' ? meta.namespace : options.namespace;
    const kind = c.workload.kind;
    const where: Where = { workload: { kind, namespace, name }, source: m.source, line: m.line };
    if (c.kind === 'Malformed') {
      const malformed = inputFinding({
        source: m.source,
        line: m.line,
        rule: 'InputMalformedWorkload',
        message: `${kind} ${name || '(no name)'}: ${c.field} is not what Kubernetes takes there`,
      });
      result.findings.push(...place([{ ...malformed, at: parsePath(c.field) }], m));
      continue;
    }
    if (c.kind === 'Partial') {
      result.findings.push(...place(misplacedFindings(m.object, c.workload, undefined, where), m));
      continue;
    }
    const drafts: Draft[] = [];
    const row: WorkloadResult = {
      kind,
      apiVersion: String(m.object.apiVersion),
      namespace,
      name,
      source: m.source,
      line: m.line,
    };
    let governed = false;
    if (isDeploymentKind(c.workload)) {
      const deployment = m.object as V1Deployment;
      const audited = auditDeployment(deployment, row, where, policies, options, namespaceLabels);
      drafts.push(...audited.findings);
      governed = audited.governed;
    } else {
      // A policy's selector may match it, but the operator acts on Deployments only: say so.
      const labels = { ...namespaceLabels.get(namespace), 'kubernetes.io/metadata.name': namespace };
      const view = { metadata: { ...(meta as V1Deployment['metadata']), namespace } };
      const selecting = policies.filter((p) => policySelects(p, view, labels)).map((p) => p.name);
      if (selecting.length > 0)
        drafts.push(
          finding(
            'PolicyNotApplicable',
            where,
            `${selecting.join(', ')} select${selecting.length === 1 ? 's' : ''} it by its labels, but the operator acts on Deployments only: no policy verdict or enforcement for a ${kind}; the checks of the manifest itself apply`,
            'set its shutdown fields by hand (the findings here say which), or run it as a Deployment',
            ['metadata', 'labels'],
          ),
        );
    }
    result.workloads.push(row);
    drafts.push(...lintPodTemplate(m.object, c.workload, c.podSpec, where, governed, services));
    result.findings.push(...place(drafts, m));
  }
  result.inventory = inventoryOf(counted);
  return result;
}

function versionOf(version: string): ServerVersion {
  const match = /^v?(\d+)\.(\d+)/.exec(version);
  return { major: match?.[1] ?? '0', minor: match?.[2] ?? '0', gitVersion: version };
}
