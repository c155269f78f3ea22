// One table, four deciders: the Deployment controller, the policy status pass, the admission
// webhook and `gsp audit` evaluate a Deployment the same way (policy/evaluate.ts). For each case,
// every selecting policy's verdict as its status lists it, the CLI's row, and which policy's
// settings the controller and the webhook write.
import type { V1Deployment } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { describe, expect, test } from 'vitest';
import { APPLIED_ANNOTATION, EXCLUDE_ANNOTATION, READINESS_PATH_ANNOTATION } from './api/annotations.ts';
import { parsePolicySpec } from './api/policy.ts';
import { audit } from './cli/audit.ts';
import { deploymentReconciler } from './controllers/deployment-controller.ts';
import { createOperatorMetrics } from './controllers/metrics.ts';
import { policyStatusReconciler } from './controllers/policy-status-controller.ts';
import { RolloutTracker } from './controllers/rollout-tracker.ts';
import {
  clusterScoped,
  FakeInformer,
  namespaced,
  policyObject,
  testView,
} from './controllers/test-support.ts';
import type { PolicyObject } from './controllers/view.ts';
import { EstimateCache } from './latency/estimates.ts';
import { silentLogger } from './log.ts';
import { container, deployment, TEST_SEAL } from './policy/test-fixtures.ts';
import type { ValidPolicy } from './policy/types.ts';
import { admit } from './webhook/admission.ts';
import { createRequest } from './webhook/test-support.ts';

const FACTS = { nativeSleep: true };
const shop = { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'shop' } } };
const common = { observedLatency: { source: 'None' } };
const POLICIES = {
  /** Every Deployment in shop, Enforce. */
  shop: policyObject('shop', { ...shop, ...common, mode: 'Enforce' }),
  /** The web tier in shop, Enforce, priority 10: wins over `shop`. */
  web: policyObject('web', {
    ...shop,
    ...common,
    mode: 'Enforce',
    priority: 10,
    deploymentSelector: { matchLabels: { tier: 'web' } },
  }),
  /** Every Deployment in shop, Audit. */
  audit: policyObject('audit', { ...shop, ...common, mode: 'Audit' }),
};
type PolicyName = keyof typeof POLICIES;

/** A Deployment serving HTTP on 8080, with nothing for shutdown. */
const bare = (options: Parameters<typeof deployment>[0] = {}) =>
  deployment({ containers: [container('web', [['http', 8080]])], grace: 30, ...options });
/** ... and everything a policy wants already (5 s preStop, the probe, a grace period above it). */
const ready = (options: Parameters<typeof deployment>[0] = {}) =>
  deployment({
    containers: [
      container('web', [['http', 8080]], {
        readinessProbe: { httpGet: { path: '/readyz', port: 8080 }, periodSeconds: 5 },
        lifecycle: { preStop: { sleep: { seconds: 5 } } },
      }),
    ],
    grace: 60,
    ...options,
  });

interface Case {
  name: string;
  policies: PolicyName[];
  deployment: V1Deployment;
  /** Each selecting policy's verdict/reason, as its status lists the Deployment. */
  verdicts: Partial<Record<PolicyName, string>>;
  /** The policy whose settings the controller and the webhook write, if any. */
  writes?: PolicyName;
}

const CASES: Case[] = [
  {
    name: 'non-compliant, Enforce',
    policies: ['shop'],
    deployment: bare(),
    verdicts: { shop: 'NonCompliant/PreStopMissing' },
    writes: 'shop',
  },
  {
    name: 'compliant, Enforce',
    policies: ['shop'],
    deployment: ready(),
    verdicts: { shop: 'Compliant/SettingsMatch' },
  },
  {
    name: 'non-compliant, Audit',
    policies: ['audit'],
    deployment: bare(),
    verdicts: { audit: 'NonCompliant/PreStopMissing' },
  },
  {
    name: 'opted out',
    policies: ['shop'],
    deployment: bare({ annotations: { [EXCLUDE_ANNOTATION]: 'true' } }),
    verdicts: { shop: 'Exempt/OptedOut' },
  },
  {
    name: 'two policies select it: the higher priority wins, the other reports OtherPolicyWins',
    policies: ['shop', 'web'],
    deployment: bare({ labels: { tier: 'web' } }),
    verdicts: { web: 'NonCompliant/PreStopMissing', shop: 'Exempt/OtherPolicyWins' },
    writes: 'web',
  },
  {
    name: 'invalid per-Deployment annotation',
    policies: ['shop'],
    deployment: bare({ annotations: { [READINESS_PATH_ANNOTATION]: 'not a path' } }),
    verdicts: { shop: 'Unknown/InvalidAnnotation' },
  },
  {
    name: 'selected by no policy',
    policies: ['shop'],
    deployment: bare({ namespace: 'elsewhere' }),
    verdicts: {},
  },
];

function valid(names: PolicyName[]): ValidPolicy[] {
  return names.map((name) => {
    const object = POLICIES[name];
    const parsed = parsePolicySpec(object.spec);
    if (!parsed.ok) throw new Error(`policy ${name}: ${JSON.stringify(parsed.errors)}`);
    return { name, generation: object.metadata?.generation ?? 1, spec: parsed.value };
  });
}

/** Each policy's verdict from its status pass. */
async function statusVerdicts(c: Case): Promise<Partial<Record<PolicyName, string>>> {
  const deployments = new FakeInformer<V1Deployment>(namespaced, [c.deployment]);
  const policies = new FakeInformer<PolicyObject>(
    clusterScoped,
    c.policies.map((p) => POLICIES[p]),
  );
  const written = new Map<string, { verdict: string; reason?: string; name: string }[]>();
  const reconcile = policyStatusReconciler({
    view: testView(deployments, policies),
    writer: { write: async (name, status) => void written.set(name, status.workloads ?? []) },
    events: { record: () => {} },
    estimates: new EstimateCache(),
    facts: FACTS,
    metrics: createOperatorMetrics(new Registry()),
    seal: TEST_SEAL,
    resyncMs: 60_000,
  });
  const verdicts: Partial<Record<PolicyName, string>> = {};
  for (const name of c.policies) {
    await reconcile(name, new AbortController().signal, silentLogger());
    const line = written.get(name)?.find((w) => w.name === c.deployment.metadata?.name);
    if (line) verdicts[name] = `${line.verdict}/${line.reason}`;
  }
  return verdicts;
}

/** The row (and the other selecting policies) of `gsp audit`. */
function cliVerdicts(c: Case): Partial<Record<PolicyName, string>> {
  const manifest = {
    source: 'case.yaml',
    line: 1,
    object: c.deployment as unknown as Record<string, unknown>,
  };
  const result = audit([manifest], valid(c.policies), { namespace: 'shop', kubernetesVersion: '1.37' });
  const verdicts: Partial<Record<PolicyName, string>> = {};
  for (const row of result.workloads) {
    if (row.policy) verdicts[row.policy as PolicyName] = `${row.verdict}/${row.reason}`;
    for (const other of row.otherPolicies ?? [])
      verdicts[other.policy as PolicyName] = `${other.verdict}/${other.reason}`;
  }
  return verdicts;
}

/** The policy whose settings the Deployment controller writes, if any. */
async function controllerWrites(c: Case): Promise<string | undefined> {
  const deployments = new FakeInformer<V1Deployment>(namespaced, [c.deployment]);
  const policies = new FakeInformer<PolicyObject>(
    clusterScoped,
    c.policies.map((p) => POLICIES[p]),
  );
  const applied: string[] = [];
  const reconcile = deploymentReconciler({
    view: testView(deployments, policies),
    writer: {
      apply: async (config) => {
        // A write that starts a rollout of the operator's carries it in its record.
        const record = JSON.parse(config.metadata.annotations?.[APPLIED_ANNOTATION] ?? '{}');
        if (record.rollout) applied.push(record.policy);
        return { ...c.deployment, metadata: { ...c.deployment.metadata, generation: 2 } };
      },
      patch: async () => c.deployment,
    },
    events: { record: () => {} },
    estimates: new EstimateCache(),
    facts: FACTS,
    tracker: new RolloutTracker(),
    metrics: createOperatorMetrics(new Registry()),
    seal: TEST_SEAL,
    rolloutCheckMs: 1000,
    resyncMs: 60_000,
  });
  const { namespace, name } = c.deployment.metadata ?? {};
  await reconcile(`${namespace}/${name}`, new AbortController().signal, silentLogger());
  return applied[0];
}

/** The policy whose settings the admission webhook adds to a CREATE, if any. */
function webhookWrites(c: Case): string | undefined {
  const object = { ...c.deployment, status: undefined };
  const decision = admit(createRequest(object), {
    policies: { valid: valid(c.policies), invalid: new Map() },
    namespaceLabels: (ns) => (ns === undefined ? undefined : { 'kubernetes.io/metadata.name': ns }),
    estimates: new EstimateCache(),
    facts: FACTS,
    breakerOpen: () => false,
    seal: TEST_SEAL,
    now: new Date('2026-12-07T12:00:00Z'),
  });
  return decision.outcome === 'Mutated' && decision.message?.startsWith('set ') ? decision.policy : undefined;
}

describe('the controller, the status pass, the webhook and gsp audit decide alike', () => {
  test.each(CASES)('$name', async (c) => {
    expect(await statusVerdicts(c)).toEqual(c.verdicts);
    expect(cliVerdicts(c)).toEqual(c.verdicts);
    expect(await controllerWrites(c)).toBe(c.writes);
    expect(webhookWrites(c)).toBe(c.writes);
  });

  test('negative control: the table is not vacuous (the cases differ in verdicts and in writes)', () => {
    expect(new Set(CASES.map((c) => JSON.stringify(c.verdicts))).size).toBe(CASES.length);
    expect(CASES.filter((c) => c.writes !== undefined).map((c) => c.writes)).toEqual(['shop', 'web']);
  });
});
