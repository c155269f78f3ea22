import type { V1Deployment } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import { GRACE_PERIOD_SECONDS_ANNOTATION, PRESTOP_SECONDS_ANNOTATION } from '../api/annotations.ts';
import type { GracefulShutdownPolicySpecInput } from '../api/policy.ts';
import { desiredSettings } from './desired.ts';
import { currentSettings, diffDeployment } from './diff.ts';
import {
  container,
  type DeploymentOptions,
  deployment,
  NEW_CLUSTER,
  NO_SOURCE,
  observed,
  policy,
} from './test-fixtures.ts';
import type { ShutdownPlan } from './types.ts';

function planFor(d: V1Deployment, spec: GracefulShutdownPolicySpecInput = {}): ShutdownPlan {
  const result = desiredSettings({
    policy: policy('p', spec),
    deployment: d,
    observation: spec.observedLatency?.source === 'Prometheus' ? observed(20) : NO_SOURCE,
    facts: NEW_CLUSTER,
  });
  if (!result.ok) throw new Error('unexpected annotation errors');
  return result.plan;
}

/** What server-side apply of the plan leaves: planned fields set, every other field kept. */
function applyPlan(d: V1Deployment, plan: ShutdownPlan): V1Deployment {
  const copy = structuredClone(d);
  const podSpec = copy.spec?.template?.spec;
  if (podSpec === undefined) throw new Error('no pod spec');
  if (plan.terminationGracePeriodSeconds !== undefined)
    podSpec.terminationGracePeriodSeconds = plan.terminationGracePeriodSeconds;
  for (const c of plan.containers) {
    const target = podSpec.containers.find((x) => x.name === c.name);
    if (target === undefined) throw new Error(`no container ${c.name}`);
    // The whole probe and hook are replaced: a correct apply drops a handler of another kind.
    if (c.readinessProbe) target.readinessProbe = c.readinessProbe;
    if (c.preStop) target.lifecycle = { ...target.lifecycle, preStop: c.preStop };
  }
  return copy;
}

/** The apiserver's defaults on a probe it stores. */
function withApiserverDefaults(d: V1Deployment): V1Deployment {
  const copy = structuredClone(d);
  for (const c of copy.spec?.template?.spec?.containers ?? []) {
    const probe = c.readinessProbe;
    if (probe?.httpGet) {
      probe.httpGet.scheme = 'HTTP';
      probe.successThreshold = 1;
    }
  }
  return copy;
}

describe('diffDeployment', () => {
  const prometheus: GracefulShutdownPolicySpecInput = { observedLatency: { source: 'Prometheus' } };

  test('a bare Deployment: every planned field is a change, described for humans', () => {
    const d = deployment({ containers: [container('web', [8080])] });
    const diff = diffDeployment(d, planFor(d, prometheus));
    expect(diff.compliant).toBe(false);
    expect(diff.changes).toEqual([
      'terminationGracePeriodSeconds: 30 -> 40',
      'containers[web].readinessProbe: missing -> httpGet /readyz:8080',
      'containers[web].preStop: missing -> sleep 5s',
    ]);
    expect(diff.fields.map((f) => [f.field, f.missing])).toEqual([
      ['terminationGracePeriodSeconds', true],
      ['readinessProbe', true],
      ['preStop', true],
    ]);
  });

  test.each<[string, DeploymentOptions, GracefulShutdownPolicySpecInput]>([
    ['one container', {}, prometheus],
    [
      'several containers, a sidecar',
      {
        containers: [container('web', [8080]), container('envoy', [15001]), container('worker')],
        annotations: { 'gracefulshutdown.dev/sidecars': 'envoy' },
      },
      {},
    ],
    [
      'Override over user settings',
      {
        containers: [
          container('web', [8080], {
            readinessProbe: { tcpSocket: { port: 8080 } },
            lifecycle: { preStop: { exec: { command: ['sleep', '99'] } } },
          }),
        ],
        grace: 600,
      },
      {
        readinessProbe: { inject: 'Override' },
        preStop: { inject: 'Override' },
        terminationGracePeriod: { inject: 'Override' },
      },
    ],
  ])(
    'after applying the plan (%s), the Deployment is compliant, with or without apiserver defaults',
    (_title, options, spec) => {
      const d = deployment(options);
      const p = planFor(d, spec);
      expect(diffDeployment(d, p).compliant).toBe(false);
      const applied = applyPlan(d, p);
      expect(diffDeployment(applied, p)).toEqual({ compliant: true, changes: [], fields: [] });
      expect(diffDeployment(withApiserverDefaults(applied), p).compliant).toBe(true);
    },
  );

  test('Override with a different handler type: not compliant while the old handler remains', () => {
    const d = deployment({
      containers: [container('web', [8080], { readinessProbe: { tcpSocket: { port: 8080 } } })],
    });
    const p = planFor(d, { readinessProbe: { inject: 'Override' }, preStop: { inject: 'Never' } });
    expect(diffDeployment(d, p).changes).toContain(
      'containers[web].readinessProbe: tcpSocket :8080 -> httpGet /readyz:8080',
    );
    // A merge that keeps the user's tcpSocket beside the planned httpGet is no compliance: a probe
    // has one handler (the apiserver refuses two), so apply must replace the handler.
    const merged = structuredClone(d);
    const web = merged.spec?.template?.spec?.containers[0];
    if (web?.readinessProbe)
      web.readinessProbe = { ...web.readinessProbe, ...p.containers[0]?.readinessProbe };
    expect(diffDeployment(merged, p).compliant).toBe(false);
  });

  test('fields the plan does not write are not compared; user extras on planned objects are ignored', () => {
    const d = deployment({
      containers: [
        container('web', [8080], {
          readinessProbe: {
            httpGet: {
              path: '/readyz',
              port: 8080,
              scheme: 'HTTP',
              httpHeaders: [{ name: 'X', value: 'y' }],
            },
            periodSeconds: 5,
            timeoutSeconds: 1,
            failureThreshold: 3,
            successThreshold: 1,
            initialDelaySeconds: 10,
          },
          lifecycle: { preStop: { sleep: { seconds: 5 } }, postStart: { exec: { command: ['true'] } } },
        }),
      ],
    });
    const p: ShutdownPlan = {
      containers: [
        {
          name: 'web',
          readinessProbe: {
            httpGet: { path: '/readyz', port: 8080 },
            periodSeconds: 5,
            timeoutSeconds: 1,
            failureThreshold: 3,
          },
          preStop: { sleep: { seconds: 5 } },
        },
      ],
      recommended: {},
      drain: { seconds: 0, reason: 'LatencySourceNone', basis: 'test', message: '' },
      graceExplanation: '',
      notes: [],
    };
    expect(diffDeployment(d, p).compliant).toBe(true);
  });

  test.each([
    [
      'period differs: the timing is shown',
      { periodSeconds: 10 },
      'containers[web].readinessProbe: httpGet /readyz:8080 (period 10s, timeout 1s, failureThreshold 3) -> httpGet /readyz:8080 (period 5s, timeout 1s, failureThreshold 3)',
    ],
    [
      'omitted period is the default 10, not 5',
      { periodSeconds: undefined },
      'containers[web].readinessProbe: httpGet /readyz:8080 (period 10s, timeout 1s, failureThreshold 3) -> httpGet /readyz:8080 (period 5s, timeout 1s, failureThreshold 3)',
    ],
    [
      'path differs',
      { httpGet: { path: '/healthz', port: 8080 } },
      'containers[web].readinessProbe: httpGet /healthz:8080 -> httpGet /readyz:8080',
    ],
    [
      'scheme HTTPS is not the default',
      { httpGet: { path: '/readyz', port: 8080, scheme: 'HTTPS' } },
      'containers[web].readinessProbe: httpGet /readyz:8080 (period 5s, timeout 1s, failureThreshold 3) -> httpGet /readyz:8080 (period 5s, timeout 1s, failureThreshold 3)',
    ],
  ])('probe mismatch: %s', (_title, change, description) => {
    const wanted = {
      httpGet: { path: '/readyz', port: 8080 },
      periodSeconds: 5,
      timeoutSeconds: 1,
      failureThreshold: 3,
    };
    const d = deployment({
      containers: [container('web', [8080], { readinessProbe: { ...wanted, ...change } })],
    });
    const p: ShutdownPlan = {
      containers: [{ name: 'web', readinessProbe: wanted }],
      recommended: {},
      drain: { seconds: 0, reason: 'LatencySourceNone', basis: 'test', message: '' },
      graceExplanation: '',
      notes: [],
    };
    expect(diffDeployment(d, p)).toMatchObject({
      compliant: false,
      changes: [description],
      fields: [{ missing: false }],
    });
  });

  test('preStop exec where sleep is planned, and a grace period set but different', () => {
    const d = deployment({
      grace: 45,
      containers: [
        container('web', [8080], { lifecycle: { preStop: { exec: { command: ['sleep', '5'] } } } }),
      ],
    });
    const p: ShutdownPlan = {
      terminationGracePeriodSeconds: 40,
      containers: [{ name: 'web', preStop: { sleep: { seconds: 5 } } }],
      recommended: {},
      drain: { seconds: 0, reason: 'LatencySourceNone', basis: 'test', message: '' },
      graceExplanation: '',
      notes: [],
    };
    const diff = diffDeployment(d, p);
    expect(diff.changes).toEqual([
      'terminationGracePeriodSeconds: 45 -> 40',
      'containers[web].preStop: exec ["sleep","5"] -> sleep 5s',
    ]);
    expect(diff.fields[0]?.missing).toBe(false);
  });

  test('omitted timing equals the planned apiserver defaults (timeout 1, failureThreshold 3)', () => {
    const d = deployment({
      containers: [
        container('web', [8080], {
          readinessProbe: { httpGet: { path: '/readyz', port: 8080 }, periodSeconds: 5 },
        }),
      ],
    });
    const wanted = {
      httpGet: { path: '/readyz', port: 8080 },
      periodSeconds: 5,
      timeoutSeconds: 1,
      failureThreshold: 3,
    };
    const p: ShutdownPlan = {
      containers: [{ name: 'web', readinessProbe: wanted }],
      recommended: {},
      drain: { seconds: 0, reason: 'LatencySourceNone', basis: 'test', message: '' },
      graceExplanation: '',
      notes: [],
    };
    expect(diffDeployment(d, p).compliant).toBe(true);
    expect(
      diffDeployment(d, {
        ...p,
        containers: [{ name: 'web', readinessProbe: { ...wanted, timeoutSeconds: 2 } }],
      }).compliant,
    ).toBe(false);
  });

  test('an explicit 30 equals a planned 30, an unset grace too (apiserver default)', () => {
    const p: ShutdownPlan = {
      terminationGracePeriodSeconds: 30,
      containers: [],
      recommended: {},
      drain: { seconds: 0, reason: 'LatencySourceNone', basis: 'test', message: '' },
      graceExplanation: '',
      notes: [],
    };
    expect(diffDeployment(deployment({ grace: 30 }), p).compliant).toBe(true);
    expect(diffDeployment(deployment(), p).compliant).toBe(true);
    expect(diffDeployment(deployment({ grace: 31 }), p).compliant).toBe(false);
  });

  test('an empty plan is always compliant', () => {
    const p = planFor(deployment(), { readinessProbe: { inject: 'Never' }, preStop: { inject: 'Never' } });
    expect(
      diffDeployment(deployment({ grace: 1 }), { ...p, terminationGracePeriodSeconds: undefined }).compliant,
    ).toBe(true);
  });

  test('planning again on the applied Deployment gives the same plan and stays compliant (no flapping)', () => {
    const d = deployment({ containers: [container('web', [['http', 8080]]), container('worker')] });
    const spec = prometheus;
    const first = planFor(d, spec);
    const applied = withApiserverDefaults(applyPlan(d, first));
    const second = planFor(applied, spec);
    expect(second.containers).toEqual(first.containers);
    expect(diffDeployment(applied, second).compliant).toBe(true);
  });
});

describe('diffDeployment: the mirror annotations count only together with their field', () => {
  const annotated = (options: DeploymentOptions, templateAnnotations: Record<string, string>) =>
    deployment({ ...options, templateAnnotations });
  const sleep5 = { preStop: { sleep: { seconds: 5 } } };
  const mirrors = { [GRACE_PERIOD_SECONDS_ANNOTATION]: '40', [PRESTOP_SECONDS_ANNOTATION]: '5' };
  const p: ShutdownPlan = {
    terminationGracePeriodSeconds: 40,
    containers: [
      { name: 'web', preStop: { sleep: { seconds: 5 } } },
      { name: 'worker', preStop: { sleep: { seconds: 5 } } },
    ],
    servingContainer: 'web',
    annotations: mirrors,
    recommended: {},
    drain: { seconds: 0, reason: 'LatencySourceNone', basis: 'test', message: '' },
    graceExplanation: '',
    notes: [],
  };

  test('field and annotation both differ: one change per field, the annotation attached', () => {
    const d = annotated(
      { grace: 30, containers: [container('web', [8080]), container('worker')] },
      {
        [GRACE_PERIOD_SECONDS_ANNOTATION]: '30',
      },
    );
    const diff = diffDeployment(d, p);
    expect(diff.compliant).toBe(false);
    expect(diff.changes).toEqual([
      'terminationGracePeriodSeconds: 30 -> 40 (annotation gracefulshutdown.dev/termination-grace-period-seconds: "30" -> "40")',
      'containers[web].preStop: missing -> sleep 5s (annotation gracefulshutdown.dev/prestop-seconds: missing -> "5")',
      // Not the serving container: the annotation mirrors the serving container's hook only.
      'containers[worker].preStop: missing -> sleep 5s',
    ]);
    expect(diff.fields.map((f) => f.annotation)).toEqual([
      { key: GRACE_PERIOD_SECONDS_ANNOTATION, from: '30', to: '40' },
      { key: PRESTOP_SECONDS_ANNOTATION, to: '5' },
      undefined,
    ]);
  });

  test.each<[string, Record<string, string>]>([
    ['missing', {}],
    ['stale', { [GRACE_PERIOD_SECONDS_ANNOTATION]: '30', [PRESTOP_SECONDS_ANNOTATION]: '2' }],
    ['already right', mirrors],
  ])('fields right, annotations %s: compliant, nothing to write', (_title, annotations) => {
    const d = annotated(
      {
        grace: 40,
        containers: [
          container('web', [8080], { lifecycle: sleep5 }),
          container('worker', [], { lifecycle: sleep5 }),
        ],
      },
      annotations,
    );
    expect(diffDeployment(d, p)).toEqual({ compliant: true, changes: [], fields: [] });
  });

  test('a field differs, its annotation is already right: no annotation in the change', () => {
    const d = annotated(
      { grace: 30, containers: [container('web', [8080], { lifecycle: sleep5 })] },
      mirrors,
    );
    const diff = diffDeployment(d, {
      ...p,
      containers: [{ name: 'web', preStop: { sleep: { seconds: 5 } } }],
    });
    expect(diff.changes).toEqual(['terminationGracePeriodSeconds: 30 -> 40']);
    expect(diff.fields[0]).not.toHaveProperty('annotation');
  });
});

describe('currentSettings', () => {
  test('a bare Deployment: the default grace period only', () => {
    expect(currentSettings(deployment())).toEqual({ terminationGracePeriodSeconds: 30 });
  });

  test('grace, the longest readable preStop, the first httpGet probe', () => {
    const d = deployment({
      grace: 60,
      containers: [
        container('a', [], { lifecycle: { preStop: { exec: { command: ['sleep', '3'] } } } }),
        container('b', [9000], {
          lifecycle: { preStop: { sleep: { seconds: 10 } } },
          readinessProbe: { httpGet: { path: '/ready', port: 'admin' } },
        }),
        container('c', [], { lifecycle: { preStop: { httpGet: { path: '/drain', port: 80 } } } }),
      ],
    });
    expect(currentSettings(d)).toEqual({
      terminationGracePeriodSeconds: 60,
      preStop: { action: 'Sleep', seconds: 10 },
      readinessProbe: { path: '/ready', port: 'admin' },
    });
  });

  test('the serving container named: its probe, or none', () => {
    const d = deployment({
      containers: [
        container('a', [], { readinessProbe: { httpGet: { path: '/a', port: 1 } } }),
        container('b', [], { readinessProbe: { httpGet: { path: '/b', port: 2 } } }),
        container('c'),
      ],
    });
    expect(currentSettings(d, 'b').readinessProbe).toEqual({ path: '/b', port: 2 });
    expect(currentSettings(d, 'c').readinessProbe).toBeUndefined();
  });

  test('exec preStop through a shell', () => {
    const d = deployment({
      containers: [
        container('a', [], { lifecycle: { preStop: { exec: { command: ['sh', '-c', 'sleep 7'] } } } }),
      ],
    });
    expect(currentSettings(d).preStop).toEqual({ action: 'Exec', seconds: 7 });
  });
});
