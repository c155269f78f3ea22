import type { V1Deployment } from '@kubernetes/client-node';
import jsonPatch, { type Operation } from 'fast-json-patch';
import { describe, expect, test } from 'vitest';
import {
  APPLIED_ANNOTATION,
  EXCLUDE_ANNOTATION,
  FIELD_MANAGER,
  GRACE_PERIOD_SECONDS_ANNOTATION,
  READINESS_PORT_ANNOTATION,
} from '../api/annotations.ts';
import type { GracefulShutdownPolicySpecInput } from '../api/policy.ts';
import type { PolicyObject } from '../controllers/view.ts';
import { EstimateCache } from '../latency/estimates.ts';
import { ownedByApply, readAppliedRecord } from '../policy/ownership.ts';
import { planWorkload, sameOwnership } from '../policy/plan.ts';
import { container, deployment, NEW_CLUSTER, policy } from '../policy/test-fixtures.ts';
import type { ValidPolicy } from '../policy/types.ts';
import {
  type AdmissionContext,
  type AdmissionRequest,
  admit,
  breakerOpenIn,
  MAX_ADMISSION_CONTAINERS,
  MAX_WARNING_LENGTH,
} from './admission.ts';
import { createRequest } from './test-support.ts';

// A CommonJS package: Node gives its functions on the default export only.
const { applyPatch } = jsonPatch;

const selectShop = { namespaceSelector: { matchLabels: { team: 'shop' } } };
const enforce = (spec: GracefulShutdownPolicySpecInput = {}) =>
  policy('web-tier', { ...selectShop, mode: 'Enforce', ...spec });
const audit = (spec: GracefulShutdownPolicySpecInput = {}) =>
  policy('web-tier', { ...selectShop, mode: 'Audit', ...spec });

function context(policies: ValidPolicy[], extra: Partial<AdmissionContext> = {}): AdmissionContext {
  return {
    policies: { valid: policies, invalid: new Map() },
    namespaceLabels: (ns): Record<string, string> => (ns === 'shop' ? { team: 'shop' } : {}),
    estimates: new EstimateCache(),
    facts: NEW_CLUSTER,
    breakerOpen: () => false,
    now: new Date('2026-11-30T12:00:00.123Z'),
    ...extra,
  };
}

/** A new Deployment as the apiserver hands it to admission: no status, the creator's managedFields. */
function fresh(options: Parameters<typeof deployment>[0] = {}): V1Deployment {
  const d = deployment(options);
  d.status = undefined;
  d.metadata = {
    ...d.metadata,
    managedFields: [
      { manager: 'kubectl', operation: 'Apply', apiVersion: 'apps/v1', fieldsType: 'FieldsV1', fieldsV1: {} },
    ],
  };
  return d;
}

function update(old: V1Deployment, object: V1Deployment): AdmissionRequest {
  return { ...createRequest(object), operation: 'UPDATE', oldObject: old };
}

function patched(object: V1Deployment, patch: Operation[]): V1Deployment {
  return applyPatch(structuredClone(object), patch, true, false).newDocument;
}

/** What the deployment controller decides: nothing to write when compliant and owned. */
function controllerWouldWrite(object: V1Deployment, p: ValidPolicy): boolean {
  const planned = planWorkload(object, p, { estimates: new EstimateCache(), facts: NEW_CLUSTER });
  if (!planned.ok) throw new Error('plan failed');
  return !(planned.diff.compliant && sameOwnership(planned.record, planned.nextRecord));
}

describe('admit: Enforce', () => {
  test('a new Deployment gets the settings, the record and the managedFields entry: the controller then writes nothing', () => {
    const p = enforce({ terminationGracePeriod: { minSeconds: 45 } });
    const object = fresh({ grace: 30 }); // the apiserver's default, there before admission
    expect(controllerWouldWrite(object, p)).toBe(true); // negative control
    const decision = admit(createRequest(object), context([p]));
    expect(decision).toMatchObject({ outcome: 'Mutated', policy: 'web-tier' });
    const after = patched(object, decision.patch);
    const web = after.spec?.template?.spec?.containers[0];
    expect(web?.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 8080 });
    expect(web?.lifecycle?.preStop).toEqual({ sleep: { seconds: 5 } });
    expect(after.spec?.template?.spec?.terminationGracePeriodSeconds).toBe(45);
    expect(after.spec?.template?.metadata?.annotations?.[GRACE_PERIOD_SECONDS_ANNOTATION]).toBe(
      String(after.spec?.template?.spec?.terminationGracePeriodSeconds),
    );
    expect(readAppliedRecord(after)).toMatchObject({
      policy: 'web-tier',
      containers: { web: { readinessProbe: true, preStop: true } },
    });
    expect(readAppliedRecord(after)?.rollout).toBeUndefined(); // the rollout is the user's, not the operator's
    // The creator's entry is untouched; the operator's Apply entry owns what was added.
    expect(after.metadata?.managedFields?.map((e) => [e.manager, e.operation])).toEqual([
      ['kubectl', 'Apply'],
      [FIELD_MANAGER, 'Apply'],
    ]);
    expect(after.metadata?.managedFields?.[1]?.time).toBe('2026-11-30T12:00:00Z');
    expect(ownedByApply(after)).toMatchObject({
      containers: { web: { readinessProbe: true, preStop: true } },
      terminationGracePeriodSeconds: after.spec?.template?.spec?.terminationGracePeriodSeconds,
    });
    expect(controllerWouldWrite(after, p)).toBe(false);
    expect(decision.warnings).toContain(
      'gracefulshutdown.dev/web-tier (Enforce): containers[web].preStop: missing -> sleep 5s',
    );
    expect(decision.warnings).toContain(
      'gracefulshutdown.dev/web-tier (Enforce): terminationGracePeriodSeconds: 30 -> 45',
    );
  });

  test('asked again about its own result (reinvocation), it changes nothing', () => {
    const p = enforce();
    const first = admit(createRequest(fresh()), context([p]));
    const again = admit(createRequest(patched(fresh(), first.patch)), context([p]));
    expect(again).toMatchObject({ outcome: 'Compliant', patch: [] });
  });

  test("a user's values stay: their preStop and a longer grace period (IfMissing, IfShorter)", () => {
    const p = enforce();
    const object = fresh({
      grace: 120,
      containers: [
        container('web', [['http', 8080]], { lifecycle: { preStop: { exec: { command: ['sleep', '7'] } } } }),
      ],
    });
    const after = patched(object, admit(createRequest(object), context([p])).patch);
    const spec = after.spec?.template?.spec;
    expect(spec?.terminationGracePeriodSeconds).toBe(120);
    expect(spec?.containers[0]?.lifecycle?.preStop).toEqual({ exec: { command: ['sleep', '7'] } });
    expect(spec?.containers[0]?.readinessProbe).toBeDefined();
    expect(controllerWouldWrite(after, p)).toBe(false);
  });

  test('Override replaces a handler of another kind whole (a merge would leave two)', () => {
    const p = enforce({ preStop: { inject: 'Override' } });
    const object = fresh({
      containers: [
        container('web', [['http', 8080]], { lifecycle: { preStop: { exec: { command: ['sleep', '2'] } } } }),
      ],
    });
    const after = patched(object, admit(createRequest(object), context([p])).patch);
    expect(after.spec?.template?.spec?.containers[0]?.lifecycle?.preStop).toEqual({ sleep: { seconds: 5 } });
  });

  test('an UPDATE that leaves the pod template alone (a scale) is not made into a rollout', () => {
    const p = enforce();
    const old = deployment();
    const scaled = { ...deployment(), spec: { ...deployment().spec, replicas: 5 } } as V1Deployment;
    expect(admit(update(old, scaled), context([p]))).toMatchObject({ outcome: 'Skipped', patch: [] });
  });

  test('an UPDATE that changes the pod template (a new image) gets the settings with it', () => {
    const p = enforce({ readinessProbe: { verification: 'Trust' } });
    const old = deployment();
    const bumped = deployment({
      containers: [container('web', [['http', 8080]], { image: 'example/web:2' })],
    });
    const decision = admit(update(old, bumped), context([p]));
    expect(decision.outcome).toBe('Mutated');
    expect(controllerWouldWrite(patched(bumped, decision.patch), p)).toBe(false);
  });

  test('with Verify, a new probe for running pods is left to the controller (never checked at admission)', () => {
    const p = enforce();
    const old = deployment(); // 2 replicas running
    const bumped = deployment({
      containers: [container('web', [['http', 8080]], { image: 'example/web:2' })],
    });
    const decision = admit(update(old, bumped), context([p]));
    const after = patched(bumped, decision.patch);
    expect(after.spec?.template?.spec?.containers[0]?.readinessProbe).toBeUndefined();
    expect(after.spec?.template?.spec?.containers[0]?.lifecycle?.preStop).toBeDefined();
    expect(decision.warnings.join('\n')).toContain('ProbeUnverified');
    // Trust writes it.
    const trusting = enforce({ readinessProbe: { verification: 'Trust' } });
    const trusted = patched(bumped, admit(update(old, bumped), context([trusting])).patch);
    expect(trusted.spec?.template?.spec?.containers[0]?.readinessProbe).toBeDefined();
  });

  test("the operator is known by its authenticated user: a client naming the operator's field manager is still mutated", () => {
    const p = enforce();
    const operator = 'system:serviceaccount:graceful-shutdown-system:graceful-shutdown-operator';
    const known = context([p], { operatorUser: operator });
    const own = createRequest(fresh(), {
      userInfo: { username: operator },
      options: { fieldManager: FIELD_MANAGER },
    });
    expect(admit(own, known)).toMatchObject({ outcome: 'Skipped', message: "the operator's own write" });
    const spoofed = createRequest(fresh(), {
      userInfo: { username: 'system:serviceaccount:tenant-a:deployer' },
      options: { fieldManager: FIELD_MANAGER },
    });
    expect(admit(spoofed, known).outcome).toBe('Mutated');
    // The negative control: without a known user the field manager is all there is to go by.
    expect(admit(spoofed, context([p])).outcome).toBe('Skipped');
  });

  test('a Deployment with more containers than MAX_ADMISSION_CONTAINERS is admitted unchanged, with a warning', () => {
    const p = enforce();
    const many = (n: number) =>
      fresh({ containers: Array.from({ length: n }, (_, i) => container(`c${i}`, i === 0 ? [8080] : [])) });
    const decision = admit(createRequest(many(MAX_ADMISSION_CONTAINERS + 1)), context([p]));
    expect(decision).toMatchObject({ outcome: 'TooLarge', patch: [] });
    expect(decision.warnings[0]).toContain(`more than the ${MAX_ADMISSION_CONTAINERS}`);
    expect(admit(createRequest(many(MAX_ADMISSION_CONTAINERS)), context([p])).outcome).toBe('Mutated');
  });

  test("the operator's own writes, opted-out and unselected Deployments are left alone", () => {
    const p = enforce();
    expect(
      admit(createRequest(fresh(), { options: { fieldManager: FIELD_MANAGER } }), context([p])).outcome,
    ).toBe('Skipped');
    expect(
      admit(createRequest(fresh({ annotations: { [EXCLUDE_ANNOTATION]: 'true' } })), context([p])),
    ).toMatchObject({
      outcome: 'Skipped',
      message: 'opted out',
    });
    expect(admit(createRequest(fresh({ namespace: 'other' })), context([p])).outcome).toBe('Skipped');
    expect(
      admit({ ...createRequest(fresh()), kind: { group: '', version: 'v1', kind: 'Pod' } }, context([p]))
        .outcome,
    ).toBe('Skipped');
    expect(admit({ ...createRequest(fresh()), subResource: 'scale' }, context([p])).outcome).toBe('Skipped');
  });

  test('the breaker open in its namespace: nothing added, and kubectl says why; other namespaces go on', () => {
    const held = context([enforce()], {
      breakerOpen: (name, namespace) => name === 'web-tier' && namespace === 'shop',
      namespaceLabels: (ns): Record<string, string> =>
        ns === 'shop' || ns === 'team-b' ? { team: 'shop' } : {},
    });
    const decision = admit(createRequest(fresh()), held);
    expect(decision).toMatchObject({ outcome: 'Held', patch: [] });
    expect(decision.warnings).toEqual([
      'gracefulshutdown.dev/web-tier: no shutdown settings added: a rollout the policy started failed in this namespace, or in rollout.breakerNamespaces namespaces (kubectl describe gsp web-tier)',
    ]);
    expect(admit(createRequest(fresh({ namespace: 'team-b' })), held).outcome).toBe('Mutated');
  });

  test('a malformed Deployment (not from the apiserver: containers a mapping, a null container) is skipped, never thrown on', () => {
    for (const containers of [{ web: {} }, [null], [{ name: 5 }], [{ name: 'web', ports: {} }]]) {
      const object = fresh() as unknown as { spec: { template: { spec: { containers: unknown } } } };
      object.spec.template.spec.containers = containers;
      expect(admit(createRequest(object as V1Deployment), context([enforce()]))).toMatchObject({
        outcome: 'Skipped',
        message: 'not a well-formed Deployment',
      });
    }
  });

  test("a request naming another namespace than its object's is skipped", () => {
    const request = { ...createRequest(fresh()), namespace: 'kube-system' };
    expect(admit(request, context([enforce()]))).toMatchObject({
      outcome: 'Skipped',
      message: 'the object names another namespace than the request',
    });
    expect(admit(createRequest(fresh()), context([enforce()])).outcome).toBe('Mutated');
  });

  test('breakerOpenIn: the namespaces status holds, or all of them while RolloutBreakerOpen is True', () => {
    const object = (status: PolicyObject['status']): PolicyObject => ({
      metadata: { name: 'p' },
      spec: {},
      status,
    });
    const condition = (value: 'True' | 'False') => ({
      type: 'RolloutBreakerOpen',
      status: value,
      reason: 'r',
      message: 'm',
      lastTransitionTime: '2026-12-07T00:00:00Z',
    });
    const held = object({ heldNamespaces: ['shop'], conditions: [condition('False')] });
    expect(breakerOpenIn(held, 'shop')).toBe(true);
    expect(breakerOpenIn(held, 'team-b')).toBe(false);
    expect(breakerOpenIn(object({ conditions: [condition('True')] }), 'team-b')).toBe(true);
    expect(breakerOpenIn(undefined, 'shop')).toBe(false);
  });

  test('an invalid annotation: nothing added, the warning names it', () => {
    const object = fresh({ annotations: { [READINESS_PORT_ANNOTATION]: 'not a port!' } });
    const decision = admit(createRequest(object), context([enforce()]));
    expect(decision).toMatchObject({ outcome: 'Held', patch: [] });
    expect(decision.warnings[0]).toContain(`annotation ${READINESS_PORT_ANNOTATION}: "not a port!"`);
  });

  test('a Deployment whose record names an invalid policy is left alone', () => {
    const object = fresh({
      annotations: { [APPLIED_ANNOTATION]: JSON.stringify({ policy: 'broken', containers: {} }) },
    });
    const ctx = context([enforce()]);
    ctx.policies.invalid.set('broken', { generation: 1, errors: [] });
    expect(admit(createRequest(object), ctx).outcome).toBe('Skipped');
  });
});

describe('admit: Audit', () => {
  test('changes nothing and says what the policy recommends', () => {
    const decision = admit(createRequest(fresh()), context([audit()]));
    expect(decision).toMatchObject({ outcome: 'Warned', patch: [] });
    expect(decision.warnings).toEqual([
      'gracefulshutdown.dev/web-tier (Audit): containers[web].readinessProbe: missing -> httpGet /readyz:8080',
      'gracefulshutdown.dev/web-tier (Audit): containers[web].preStop: missing -> sleep 5s',
      expect.stringMatching(/^gracefulshutdown\.dev\/web-tier \(Audit\): grace 30 s: preStop 5 \+ drain 0/),
    ]);
    for (const w of decision.warnings) expect(w.length).toBeLessThanOrEqual(MAX_WARNING_LENGTH);
  });

  test('a compliant Deployment gets no warning', () => {
    const p = audit();
    const compliant = patched(fresh(), admit(createRequest(fresh()), context([enforce()])).patch);
    expect(admit(createRequest(compliant), context([p]))).toMatchObject({
      outcome: 'Compliant',
      warnings: [],
    });
  });
});

describe('admit: the probe matches the protocol (a new Deployment has no pod to ask)', () => {
  const probeOf = (decision: ReturnType<typeof admit>, object: V1Deployment) =>
    patched(object, decision.patch).spec?.template?.spec?.containers[0]?.readinessProbe;

  test.each<[string, [string, number] | number, object]>([
    ['grpc', ['grpc', 9090], { tcpSocket: { port: 9090 } }],
    ['redis', ['redis', 6379], { tcpSocket: { port: 6379 } }],
    ['a name that says nothing', ['api', 8080], { tcpSocket: { port: 8080 } }],
    ['no name', 8080, { tcpSocket: { port: 8080 } }],
    ['http', ['http', 8080], { httpGet: { path: '/readyz', port: 8080 } }],
  ])('a new Deployment whose port is %s', (_title, port, want) => {
    const object = fresh({ containers: [container('web', [port])] });
    const decision = admit(createRequest(object), context([enforce()]));
    expect(decision.outcome).toBe('Mutated');
    expect(probeOf(decision, object)).toMatchObject(want);
  });

  test('the fallback says why in a warning', () => {
    const object = fresh({ containers: [container('web', [['api', 8080]])] });
    const decision = admit(createRequest(object), context([enforce()]));
    expect(decision.warnings.join('\n')).toContain(
      'ProbeFallback: a new Deployment has no pod yet: GET /readyz on port 8080 of web cannot be checked at admission',
    );
  });

  test('gRPC with grpcHealthService: the kubelet grpc probe; a Service appProtocol is read', () => {
    const grpc = fresh({ containers: [container('web', [['grpc', 9090]])] });
    const decision = admit(
      createRequest(grpc),
      context([enforce({ readinessProbe: { grpcHealthService: true } })]),
    );
    expect(probeOf(decision, grpc)).toMatchObject({ grpc: { port: 9090 } });
    const redis = fresh({ containers: [container('web', [['http', 6379]])] });
    const services = {
      inNamespace: () => [
        {
          namespace: 'shop',
          name: 'cache',
          selector: { app: 'web' },
          ports: [{ port: 6379, appProtocol: 'redis' }],
        },
      ],
    };
    expect(probeOf(admit(createRequest(redis), context([enforce()], { services })), redis)).toMatchObject({
      tcpSocket: { port: 6379 },
    });
  });

  test("an UPDATE changing the template replaces the operator's tcpSocket fallback with a verified httpGet", () => {
    const p = enforce();
    const created = fresh({ containers: [container('web', [['api', 8080]])] });
    const admitted = patched(created, admit(createRequest(created), context([p])).patch);
    expect(admitted.spec?.template?.spec?.containers[0]?.readinessProbe?.tcpSocket).toBeDefined();
    const running: V1Deployment = { ...admitted, status: { replicas: 2, updatedReplicas: 2 } };
    const bumped = structuredClone(running);
    const web = bumped.spec?.template?.spec?.containers[0];
    if (web) web.image = 'example/web:2';
    const verified = {
      lookup: () => () => ({
        state: 'Verified' as const,
        tried: 'GET http://10.88.0.5:8080/readyz answered 200',
      }),
    };
    const upgraded = admit(update(running, bumped), context([p], { probes: verified }));
    expect(probeOf(upgraded, bumped)).toMatchObject({ httpGet: { path: '/readyz', port: 8080 } });
    expect(probeOf(upgraded, bumped)?.tcpSocket).toBeUndefined();
    // No verdict cached: the fallback stays, the controller checks on a running pod.
    const unchecked = admit(update(running, bumped), context([p]));
    expect(probeOf(unchecked, bumped)).toMatchObject({ tcpSocket: { port: 8080 } });
  });
});
