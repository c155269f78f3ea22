// `gsp audit`, the pure part: manifests and policies in, findings out. A Deployment a policy
// selects gets the verdict the operator would give (the same match, planning and verdict code);
// every Deployment is also checked for the classic shutdown mistakes, the policy or not.
import type { V1Container, V1Deployment } from '@kubernetes/client-node';
import { API_VERSION, KIND, parsePolicySpec } from '../api/policy.ts';
import { clusterFacts, type ServerVersion } from '../policy/desired.ts';
import { type Evaluation, evaluate, verdictFor } from '../policy/evaluate.ts';
import { type ProbeVerdictReader, planWorkload } from '../policy/plan.ts';
import { currentGraceSeconds, preStopSummary, probesEqual, regularContainers } from '../policy/podspec.ts';
import type { Estimate, ValidPolicy } from '../policy/types.ts';
import { isRecord } from '../util/is-record.ts';
import type { Manifest } from './manifests.ts';

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
  InputUnreadable: {
    severity: 'error',
    description: 'a file or directory named on the command line cannot be read; the others are audited',
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
  /** The Deployment it is about; undefined for a finding about the input itself. */
  workload?: { namespace: string; name: string };
  policy?: string;
  message: string;
  /** What to change, in a sentence. */
  fix: string;
  source: string;
  line: number;
}

export interface WorkloadResult {
  namespace: string;
  name: string;
  source: string;
  line: number;
  /** The policy that governs it; undefined when none selects it. */
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
export const isDeployment = (m: { object: Record<string, unknown> }) =>
  m.object.apiVersion === 'apps/v1' && m.object.kind === 'Deployment';

/**
 * What in a Deployment's pod template is not the shape Kubernetes requires, so that reading it
 * as a V1Deployment would be a guess: the path of the first such field, or undefined.
 */
export function malformedField(object: Record<string, unknown>): string | undefined {
  const spec = object.spec;
  if (!isRecord(spec)) return 'spec';
  if (!isRecord(spec.template)) return 'spec.template';
  const pod = spec.template.spec;
  if (!isRecord(pod)) return 'spec.template.spec';
  for (const list of ['containers', 'initContainers'] as const) {
    const containers = pod[list];
    if (containers === undefined && list === 'initContainers') continue;
    if (!Array.isArray(containers)) return `spec.template.spec.${list}`;
    for (const [i, c] of containers.entries()) {
      const at = `spec.template.spec.${list}[${i}]`;
      if (!isRecord(c)) return at;
      for (const field of ['ports', 'env', 'volumeMounts'] as const)
        if (c[field] !== undefined && c[field] !== null && !Array.isArray(c[field])) return `${at}.${field}`;
      for (const field of ['lifecycle', 'readinessProbe', 'livenessProbe', 'startupProbe'] as const)
        if (c[field] !== undefined && c[field] !== null && !isRecord(c[field])) return `${at}.${field}`;
    }
  }
  return undefined;
}

/** A problem with the input as a finding: the run goes on without that part. */
export function inputFinding(problem: {
  source: string;
  line: number;
  rule: Extract<RuleId, `Input${string}`>;
  message: string;
}): Finding {
  const fixes: Record<typeof problem.rule, string> = {
    InputUnreadable: 'name files and directories that exist and can be read',
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
/** Images without a shell, by name: distroless, scratch-based static images. */
const NO_SHELL_IMAGE = /(^|[/:@-])(distroless|scratch)([/:@-]|$)|chainguard\/static|static-debian/;

function containerPath(kind: 'containers' | 'initContainers', name: string): string {
  return `spec.template.spec.${kind}[${name}]`;
}

/** terminationGracePeriodSeconds set under a container, where Kubernetes has no such field. */
export function misplacedGracePeriods(
  deployment: V1Deployment,
): { kind: 'containers' | 'initContainers'; container: string; value: unknown }[] {
  const podSpec = deployment.spec?.template?.spec;
  return (['containers', 'initContainers'] as const).flatMap((kind) =>
    ((podSpec?.[kind] ?? []) as (V1Container & Record<string, unknown>)[])
      .filter((c) => c.terminationGracePeriodSeconds !== undefined)
      .map((c) => ({ kind, container: c.name, value: c.terminationGracePeriodSeconds })),
  );
}

/** The classic mistakes in one Deployment, read from the manifest as written. */
export function lintDeployment(
  deployment: V1Deployment,
  where: Omit<Finding, 'rule' | 'severity' | 'message' | 'fix'>,
  governed: boolean,
): Finding[] {
  const findings: Finding[] = [];
  const add = (rule: RuleId, message: string, fix: string) =>
    findings.push({ rule, severity: RULES[rule].severity, message, fix, ...where });
  const podSpec = deployment.spec?.template?.spec;
  for (const { kind, container, value } of misplacedGracePeriods(deployment))
    add(
      'MisplacedTerminationGracePeriod',
      `${containerPath(kind, container)}.terminationGracePeriodSeconds: ${JSON.stringify(value)} is not a container field; Kubernetes drops it (or rejects it with strict validation) and the pod keeps ${podSpec?.terminationGracePeriodSeconds ?? 30} s`,
      `move it to spec.template.spec.terminationGracePeriodSeconds`,
    );
  // The same mistake one or two levels up: on the Deployment's spec, or on the pod template
  // beside its spec. (--fix moves only the container's: these are reported.)
  const spec = deployment.spec as
    | (Record<string, unknown> & { template?: Record<string, unknown> })
    | undefined;
  for (const [path, value] of [
    ['spec', spec?.terminationGracePeriodSeconds],
    ['spec.template', spec?.template?.terminationGracePeriodSeconds],
  ] as const)
    if (value !== undefined)
      add(
        'MisplacedTerminationGracePeriod',
        `${path}.terminationGracePeriodSeconds: ${JSON.stringify(value)} is not a field of ${path === 'spec' ? 'a Deployment spec' : 'a pod template'}; Kubernetes drops it (or rejects it with strict validation) and the pod keeps ${podSpec?.terminationGracePeriodSeconds ?? 30} s`,
        'move it to spec.template.spec.terminationGracePeriodSeconds',
      );
  const grace = currentGraceSeconds(deployment);
  for (const container of regularContainers(deployment)) {
    const hook = container.lifecycle?.preStop;
    const waits = preStopSummary(hook)?.seconds;
    if (waits !== undefined && waits >= grace)
      add(
        'PreStopNotShorterThanGrace',
        `${containerPath('containers', container.name)}: preStop waits ${waits} s and terminationGracePeriodSeconds is ${grace} s: the grace period counts from before the hook, so the container is killed before the app gets SIGTERM with time to drain`,
        `set spec.template.spec.terminationGracePeriodSeconds above ${waits} s plus the time requests need to finish`,
      );
    const command = hook?.exec?.command ?? [];
    if (command[0] !== undefined && SHELL.test(command[0]) && NO_SHELL_IMAGE.test(container.image ?? ''))
      add(
        'ShellPreStopWithoutShell',
        `${containerPath('containers', container.name)}: preStop runs ${command[0]}, and ${container.image} looks like an image without a shell: the hook fails and the pod stops at once`,
        `use the native sleep action (lifecycle.preStop.sleep.seconds, Kubernetes 1.30+) or a binary the image has`,
      );
    if (!governed && (container.ports ?? []).length > 0 && container.readinessProbe === undefined)
      add(
        'ReadinessProbeMissing',
        `${containerPath('containers', container.name)} serves port ${container.ports?.[0]?.containerPort} without a readiness probe`,
        `add a readinessProbe (an HTTP path that fails once shutdown begins)`,
      );
    if (
      container.readinessProbe !== undefined &&
      container.livenessProbe !== undefined &&
      probesEqual(container.readinessProbe, container.livenessProbe)
    )
      add(
        'IdenticalReadinessAndLiveness',
        `${containerPath('containers', container.name)} probes readiness and liveness the same way: failing readiness to drain would get it restarted`,
        'give liveness its own check that stays healthy while draining (e.g. /healthz beside /readyz), or a higher failureThreshold',
      );
  }
  return findings;
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

export function audit(manifests: Manifest[], policies: ValidPolicy[], options: AuditOptions): AuditResult {
  const namespaceLabels = namespaceLabelsOf(manifests);
  const result: AuditResult = { workloads: [], findings: [], policies: policies.map((p) => p.name) };
  for (const m of manifests.filter(isDeployment)) {
    const bad = malformedField(m.object);
    if (bad !== undefined) {
      const meta = isRecord(m.object.metadata) ? m.object.metadata : {};
      result.findings.push(
        inputFinding({
          source: m.source,
          line: m.line,
          rule: 'InputMalformedWorkload',
          message: `Deployment ${typeof meta.name === 'string' ? meta.name : '(no name)'}: ${bad} is not what Kubernetes takes there`,
        }),
      );
      continue;
    }
    const { deployment, namespace, evaluation } = govern(
      m.object as V1Deployment,
      policies,
      options,
      namespaceLabels,
    );
    const name = deployment.metadata?.name ?? '';
    const where = { workload: { namespace, name }, source: m.source, line: m.line };
    const row: WorkloadResult = { namespace, name, source: m.source, line: m.line };
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
    if (evaluation.kind === 'InvalidAnnotations' || evaluation.kind === 'Planned') {
      const others = evaluation.losers.flatMap((loser) => {
        const theirs = verdictFor(deployment, evaluation, loser.name);
        return theirs ? [{ policy: loser.name, verdict: theirs.verdict, reason: theirs.reason ?? '' }] : [];
      });
      if (others.length > 0) row.otherPolicies = others;
    }
    const policy =
      evaluation.kind === 'InvalidAnnotations' || evaluation.kind === 'Planned'
        ? evaluation.policy
        : undefined;
    if (policy && evaluation.kind === 'InvalidAnnotations')
      result.findings.push({
        rule: 'PolicyUnknown',
        severity: RULES.PolicyUnknown.severity,
        policy: policy.name,
        message: verdict?.message ?? verdict?.reason ?? 'invalid annotations',
        fix: 'correct the annotation',
        ...where,
      });
    if (policy && evaluation.kind === 'Planned' && verdict?.verdict === 'NonCompliant') {
      const { planned } = evaluation;
      result.findings.push({
        rule: 'PolicyNonCompliant',
        severity: RULES.PolicyNonCompliant.severity,
        policy: policy.name,
        message: `${verdict.reason}: ${planned.diff.changes.join('; ') || verdict.message}`,
        fix: `${planned.plan.graceExplanation}${policy.spec.mode === 'Enforce' ? '; in Enforce the operator sets these at admission' : ''}`,
        ...where,
      });
    }
    result.workloads.push(row);
    result.findings.push(
      ...lintDeployment(
        deployment,
        where,
        evaluation.kind === 'InvalidAnnotations' || evaluation.kind === 'Planned',
      ),
    );
  }
  return result;
}

function versionOf(version: string): ServerVersion {
  const match = /^v?(\d+)\.(\d+)/.exec(version);
  return { major: match?.[1] ?? '0', minor: match?.[2] ?? '0', gitVersion: version };
}
