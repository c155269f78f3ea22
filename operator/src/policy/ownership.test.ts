import type { V1Deployment, V1LifecycleHandler, V1Probe } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import {
  APPLIED_ANNOTATION,
  GRACE_PERIOD_SECONDS_ANNOTATION,
  PRESTOP_SECONDS_ANNOTATION,
} from '../api/annotations.ts';
import { desiredSettings } from './desired.ts';
import {
  type AppliedRecord,
  applyConfiguration,
  handlerReplacements,
  keepConfiguration,
  mirroredAnnotations,
  readAppliedRecord,
  recordFor,
  retainOwnedFields,
  withMirrorAnnotations,
  withoutOwnedFields,
} from './ownership.ts';
import { container, deployment, NEW_CLUSTER, NO_SOURCE, policy } from './test-fixtures.ts';
import type { ShutdownPlan } from './types.ts';

const PROBE: V1Probe = {
  httpGet: { path: '/readyz', port: 8080 },
  periodSeconds: 5,
  timeoutSeconds: 1,
  failureThreshold: 3,
};
const USER_PROBE: V1Probe = { httpGet: { path: '/health', port: 9000 }, periodSeconds: 7 };
const SLEEP: V1LifecycleHandler = { sleep: { seconds: 5 } };
const USER_HOOK: V1LifecycleHandler = { exec: { command: ['/bin/drain'] } };

const drain = { seconds: 0, reason: 'LatencySourceNone', basis: 'no latency source', message: 'drain 0 s' };

/** A plan built by hand: only the fields given are written. */
function plan(fields: Partial<ShutdownPlan> = {}): ShutdownPlan {
  return { containers: [], recommended: {}, drain, graceExplanation: '', notes: [], ...fields };
}

const withAnnotation = (d: V1Deployment, value: string): V1Deployment => {
  const copy = structuredClone(d);
  copy.metadata = { ...copy.metadata, annotations: { [APPLIED_ANNOTATION]: value } };
  return copy;
};

describe('readAppliedRecord', () => {
  test('parses each annotation text once: the same text gives the same record, a new text a new one', () => {
    const withRecord = (policyName: string) =>
      deployment({
        annotations: {
          [APPLIED_ANNOTATION]: JSON.stringify({
            policy: policyName,
            policyGeneration: 1,
            containers: {},
            reason: '',
          }),
        },
      });
    const first = readAppliedRecord(withRecord('memo-a'));
    expect(first?.policy).toBe('memo-a');
    expect(readAppliedRecord(withRecord('memo-a'))).toBe(first);
    expect(readAppliedRecord(withRecord('memo-b'))?.policy).toBe('memo-b');
  });

  test('absent annotation: nothing owned', () => {
    expect(readAppliedRecord(deployment())).toBeUndefined();
    expect(readAppliedRecord(deployment({ annotations: { other: 'x' } }))).toBeUndefined();
    expect(readAppliedRecord(withAnnotation(deployment(), ''))).toBeUndefined();
  });

  test.each([
    ['malformed JSON', '{"policy":'],
    ['JSON null', 'null'],
    ['a string', '"policy"'],
    ['no policy', '{"containers":{}}'],
    ['policy not a string', '{"policy":1,"containers":{}}'],
    ['no containers', '{"policy":"p"}'],
    ['containers null', '{"policy":"p","containers":null}'],
    ['containers a string', '{"policy":"p","containers":"web"}'],
    ['containers an array', '{"policy":"p","containers":[{"readinessProbe":true}]}'],
    ['a container entry null', '{"policy":"p","containers":{"web":null}}'],
    ['a container entry a boolean', '{"policy":"p","containers":{"web":true}}'],
  ])('%s: undefined', (_title, value) => {
    expect(readAppliedRecord(withAnnotation(deployment(), value))).toBeUndefined();
  });

  test('missing generation and reason are defaulted', () => {
    expect(readAppliedRecord(withAnnotation(deployment(), '{"policy":"p","containers":{}}'))).toEqual({
      policy: 'p',
      policyGeneration: 0,
      containers: {},
      reason: '',
    });
  });

  test('a grace period that is not a number is not owned', () => {
    const record = readAppliedRecord(
      withAnnotation(deployment(), '{"policy":"p","containers":{},"terminationGracePeriodSeconds":"30"}'),
    );
    expect(record).toBeDefined();
    expect(record).not.toHaveProperty('terminationGracePeriodSeconds');
  });

  test('round trip through recordFor and applyConfiguration', () => {
    const written = recordFor(
      { name: 'web-policy', generation: 3 },
      plan({
        terminationGracePeriodSeconds: 45,
        containers: [{ name: 'web', readinessProbe: PROBE, preStop: SLEEP }],
      }),
    );
    const annotation = applyConfiguration(deployment(), written, plan()).metadata.annotations?.[
      APPLIED_ANNOTATION
    ];
    expect(annotation).toBeDefined();
    const read = readAppliedRecord(withAnnotation(deployment(), annotation ?? ''));
    expect(read).toEqual(written);
    expect(read).toEqual({
      policy: 'web-policy',
      policyGeneration: 3,
      terminationGracePeriodSeconds: 45,
      containers: { web: { readinessProbe: true, preStop: true } },
      reason: 'drain 0 s',
    });
  });
});

describe('withoutOwnedFields', () => {
  const original = deployment({
    grace: 60,
    containers: [
      container('web', [8080], {
        readinessProbe: PROBE,
        lifecycle: { preStop: SLEEP, postStart: USER_HOOK },
      }),
      container('worker', [], { readinessProbe: USER_PROBE, lifecycle: { preStop: USER_HOOK } }),
      container('proxy', [], { lifecycle: { preStop: USER_HOOK } }),
    ],
  });
  const snapshot = structuredClone(original);
  const record: AppliedRecord = {
    policy: 'p',
    policyGeneration: 1,
    terminationGracePeriodSeconds: 60,
    containers: { web: { readinessProbe: true, preStop: true }, worker: { preStop: true } },
    reason: '',
  };
  const stripped = withoutOwnedFields(original, record);
  const byName = (name: string) => stripped.spec?.template?.spec?.containers.find((c) => c.name === name);

  test('no record: the Deployment itself', () => {
    expect(withoutOwnedFields(original, undefined)).toBe(original);
  });

  test('removes owned probes and preStop hooks per container', () => {
    expect(byName('web')?.readinessProbe).toBeUndefined();
    expect(byName('web')?.lifecycle?.preStop).toBeUndefined();
    expect(byName('worker')?.lifecycle?.preStop).toBeUndefined();
  });

  test("keeps the user's fields and other containers", () => {
    expect(byName('web')?.lifecycle?.postStart).toEqual(USER_HOOK);
    expect(byName('web')?.ports).toEqual([{ containerPort: 8080 }]);
    expect(byName('worker')?.readinessProbe).toEqual(USER_PROBE);
    expect(byName('proxy')?.lifecycle?.preStop).toEqual(USER_HOOK);
    expect(stripped.spec?.template?.spec?.containers.map((c) => c.name)).toEqual(['web', 'worker', 'proxy']);
  });

  test('keeps the grace period', () => {
    expect(stripped.spec?.template?.spec?.terminationGracePeriodSeconds).toBe(60);
  });

  test('does not mutate the input', () => {
    expect(stripped).not.toBe(original);
    expect(original).toEqual(snapshot);
  });

  test('copies only the path to what it removes (no deep copy of a cached object)', () => {
    const [, , proxy] = original.spec?.template?.spec?.containers ?? [];
    expect(byName('proxy')).toBe(proxy);
    expect(stripped.metadata).toBe(original.metadata);
    expect(stripped.spec?.selector).toBe(original.spec?.selector);
  });
});

describe('recordFor', () => {
  test('only the containers the plan writes, only the fields it writes', () => {
    const record = recordFor(
      { name: 'p', generation: 2 },
      plan({
        containers: [
          { name: 'web', readinessProbe: PROBE, preStop: SLEEP },
          { name: 'worker', preStop: SLEEP },
          { name: 'idle' },
        ],
      }),
    );
    expect(record.containers).toEqual({
      web: { readinessProbe: true, preStop: true },
      worker: { preStop: true },
    });
    expect(record.policy).toBe('p');
    expect(record.policyGeneration).toBe(2);
    expect(record.reason).toBe('drain 0 s');
  });

  test('the grace period only when planned', () => {
    expect(recordFor({ name: 'p', generation: 1 }, plan())).not.toHaveProperty(
      'terminationGracePeriodSeconds',
    );
    expect(
      recordFor({ name: 'p', generation: 1 }, plan({ terminationGracePeriodSeconds: 0 }))
        .terminationGracePeriodSeconds,
    ).toBe(0);
  });

  test('from desiredSettings: the serving container gets probe and hook, the grace is not raised', () => {
    const d = deployment({ containers: [container('web', [['http', 8080]]), container('sidecar')] });
    const result = desiredSettings({
      policy: policy('p', { mode: 'Enforce' }),
      deployment: d,
      observation: NO_SOURCE,
      facts: NEW_CLUSTER,
    });
    if (!result.ok) throw new Error('plan failed');
    // The default grace (30 s) is not shorter than the computed one: not written, not owned.
    expect(recordFor({ name: 'p', generation: 1 }, result.plan)).toEqual({
      policy: 'p',
      policyGeneration: 1,
      containers: { web: { readinessProbe: true, preStop: true }, sidecar: { preStop: true } },
      reason: result.plan.drain.message,
    });
  });
});

describe('applyConfiguration', () => {
  const d = deployment({
    name: 'api',
    namespace: 'shop',
    containers: [container('web', [8080]), container('log-shipper')],
  });

  test('identity, record annotation and the written fields only', () => {
    const p = plan({
      terminationGracePeriodSeconds: 40,
      containers: [{ name: 'web', readinessProbe: PROBE, preStop: SLEEP }],
    });
    const record = recordFor({ name: 'p', generation: 1 }, p);
    expect(applyConfiguration(d, record, p)).toEqual({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: {
        name: 'api',
        namespace: 'shop',
        annotations: { [APPLIED_ANNOTATION]: JSON.stringify(record) },
      },
      spec: {
        template: {
          spec: {
            terminationGracePeriodSeconds: 40,
            containers: [{ name: 'web', readinessProbe: PROBE, lifecycle: { preStop: SLEEP } }],
          },
        },
      },
    });
  });

  test('a container with only a hook gets no probe, and no grace when none is planned', () => {
    const p = plan({ containers: [{ name: 'log-shipper', preStop: SLEEP }] });
    const config = applyConfiguration(d, recordFor({ name: 'p', generation: 1 }, p), p);
    expect(config.spec).toEqual({
      template: { spec: { containers: [{ name: 'log-shipper', lifecycle: { preStop: SLEEP } }] } },
    });
  });

  test('containers the plan does not write are left out', () => {
    const p = plan({ containers: [{ name: 'web', readinessProbe: PROBE }, { name: 'log-shipper' }] });
    const config = applyConfiguration(d, recordFor({ name: 'p', generation: 1 }, p), p);
    expect(config.spec?.template.spec.containers).toEqual([{ name: 'web', readinessProbe: PROBE }]);
  });

  test('nothing written: no spec, the record still written', () => {
    const p = plan();
    const record = recordFor({ name: 'p', generation: 1 }, p);
    const config = applyConfiguration(d, record, p);
    expect(config).not.toHaveProperty('spec');
    expect(config.metadata.annotations).toEqual({ [APPLIED_ANNOTATION]: JSON.stringify(record) });
  });

  test('only the grace period', () => {
    const p = plan({ terminationGracePeriodSeconds: 31 });
    const config = applyConfiguration(d, recordFor({ name: 'p', generation: 1 }, p), p);
    expect(config.spec).toEqual({ template: { spec: { terminationGracePeriodSeconds: 31 } } });
  });
});

describe('keepConfiguration', () => {
  const OUR_PROBE: V1Probe = { httpGet: { path: '/readyz', port: 8080 }, periodSeconds: 9 };
  const d = deployment({
    name: 'api',
    namespace: 'shop',
    grace: 75,
    containers: [
      container('web', [8080], { readinessProbe: OUR_PROBE, lifecycle: { preStop: SLEEP } }),
      container('worker', [], {
        readinessProbe: USER_PROBE,
        lifecycle: { preStop: { sleep: { seconds: 12 } } },
      }),
    ],
  });
  const record: AppliedRecord = {
    policy: 'p',
    policyGeneration: 1,
    terminationGracePeriodSeconds: 60,
    containers: {
      web: { readinessProbe: true, preStop: true },
      worker: { preStop: true },
      gone: { readinessProbe: true, preStop: true },
    },
    reason: '',
  };

  test('keeps the current values of owned fields exactly, no annotations', () => {
    expect(keepConfiguration(d, record)).toEqual({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'api', namespace: 'shop' },
      spec: {
        template: {
          spec: {
            // The current value, not the recorded one.
            terminationGracePeriodSeconds: 75,
            containers: [
              { name: 'web', readinessProbe: OUR_PROBE, lifecycle: { preStop: SLEEP } },
              // The worker's probe is the user's: not named.
              { name: 'worker', lifecycle: { preStop: { sleep: { seconds: 12 } } } },
            ],
          },
        },
      },
    });
  });

  test('no annotations at all, so the record is removed', () => {
    const config = keepConfiguration(d, record);
    expect(config.metadata).not.toHaveProperty('annotations');
  });

  test('skips containers that no longer exist', () => {
    const names = keepConfiguration(d, record).spec?.template.spec.containers as { name: string }[];
    expect(names.map((c) => c.name)).toEqual(['web', 'worker']);
  });

  test('the grace period only if owned', () => {
    const { terminationGracePeriodSeconds: _, ...withoutGrace } = record;
    const config = keepConfiguration(d, withoutGrace);
    expect(config.spec?.template.spec).not.toHaveProperty('terminationGracePeriodSeconds');
  });

  test('an owned field the user removed since is not named', () => {
    const edited = structuredClone(d);
    const web = edited.spec?.template?.spec?.containers[0];
    if (web) web.readinessProbe = undefined;
    const config = keepConfiguration(edited, { ...record, containers: { web: { readinessProbe: true } } });
    // No field left to keep: only the grace period.
    expect(config.spec).toEqual({ template: { spec: { terminationGracePeriodSeconds: 75 } } });
  });

  test('nothing owned any more: metadata only', () => {
    const config = keepConfiguration(d, { policy: 'p', policyGeneration: 1, containers: {}, reason: '' });
    expect(config).toEqual({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'api', namespace: 'shop' },
    });
  });
});

describe('handlerReplacements', () => {
  test('nothing to replace: no handler, or the same handler kind', () => {
    const none = deployment({ containers: [container('web', [8080])] });
    expect(
      handlerReplacements(
        none,
        plan({ containers: [{ name: 'web', readinessProbe: PROBE, preStop: SLEEP }] }),
      ),
    ).toEqual([]);
    const sameKinds = deployment({
      containers: [
        container('web', [8080], {
          readinessProbe: USER_PROBE,
          lifecycle: { preStop: { sleep: { seconds: 1 } } },
        }),
      ],
    });
    expect(
      handlerReplacements(
        sameKinds,
        plan({ containers: [{ name: 'web', readinessProbe: PROBE, preStop: SLEEP }] }),
      ),
    ).toEqual([]);
  });

  test("another kind is replaced whole, at the container's index, guarded by a test of its name", () => {
    const d = deployment({
      containers: [
        container('proxy', [15001]),
        container('web', [8080], {
          readinessProbe: { tcpSocket: { port: 8080 } },
          lifecycle: { preStop: USER_HOOK },
        }),
      ],
    });
    expect(
      handlerReplacements(d, plan({ containers: [{ name: 'web', readinessProbe: PROBE, preStop: SLEEP }] })),
    ).toEqual([
      { op: 'test', path: '/spec/template/spec/containers/1/name', value: 'web' },
      { op: 'replace', path: '/spec/template/spec/containers/1/readinessProbe', value: PROBE },
      { op: 'replace', path: '/spec/template/spec/containers/1/lifecycle/preStop', value: SLEEP },
    ]);
  });

  test('only the fields the plan writes are considered', () => {
    const d = deployment({
      containers: [container('web', [8080], { readinessProbe: { tcpSocket: { port: 8080 } } })],
    });
    // The plan leaves the probe alone (IfMissing kept the user's): no replacement.
    expect(handlerReplacements(d, plan({ containers: [{ name: 'web', preStop: SLEEP }] }))).toEqual([]);
  });
});

describe('retainOwnedFields', () => {
  const owned: AppliedRecord = {
    policy: 'p',
    policyGeneration: 1,
    terminationGracePeriodSeconds: 45,
    containers: { web: { readinessProbe: true, preStop: true } },
    reason: '',
  };
  const managed = deployment({
    grace: 45,
    containers: [
      container('sidecar', [15001]),
      container('web', [8080], { readinessProbe: PROBE, lifecycle: { preStop: SLEEP } }),
    ],
  });

  test('owned fields the plan leaves out come back at their current values', () => {
    const kept = retainOwnedFields(managed, owned, plan());
    expect(kept.terminationGracePeriodSeconds).toBe(45);
    expect(kept.containers).toEqual([{ name: 'web', readinessProbe: PROBE, preStop: SLEEP }]);
  });

  test('what the plan writes wins; nothing is added without a record', () => {
    const planned = plan({
      terminationGracePeriodSeconds: 60,
      containers: [{ name: 'web', preStop: { sleep: { seconds: 9 } } }],
    });
    const kept = retainOwnedFields(managed, owned, planned);
    expect(kept.terminationGracePeriodSeconds).toBe(60);
    expect(kept.containers).toEqual([
      { name: 'web', preStop: { sleep: { seconds: 9 } }, readinessProbe: PROBE },
    ]);
    expect(retainOwnedFields(managed, undefined, planned)).toBe(planned);
  });

  test('a field the user removed meanwhile is not brought back', () => {
    const removed = deployment({ containers: [container('web', [8080])] });
    expect(retainOwnedFields(removed, owned, plan()).containers).toEqual([]);
  });
});

describe('mirror annotations', () => {
  const GRACE = GRACE_PERIOD_SECONDS_ANNOTATION;
  const PRESTOP = PRESTOP_SECONDS_ANNOTATION;
  const USER_ANNOTATION = { 'kubectl.kubernetes.io/restartedAt': '2025-01-01T00:00:00Z' };
  const owning: AppliedRecord = {
    policy: 'p',
    policyGeneration: 1,
    terminationGracePeriodSeconds: 45,
    containers: { web: { readinessProbe: true, preStop: true } },
    templateAnnotations: [GRACE, PRESTOP],
    reason: '',
  };

  describe('mirroredAnnotations', () => {
    test('the grace period and the serving container preStop the plan writes', () => {
      expect(
        mirroredAnnotations(
          plan({
            terminationGracePeriodSeconds: 45,
            servingContainer: 'web',
            containers: [{ name: 'web', preStop: SLEEP }],
          }),
        ),
      ).toEqual({ [GRACE]: '45', [PRESTOP]: '5' });
    });

    test('exec sleep N counts; a grace period of 0 too', () => {
      const exec = { exec: { command: ['sleep', '12'] } };
      expect(
        mirroredAnnotations(
          plan({
            terminationGracePeriodSeconds: 0,
            servingContainer: 'web',
            containers: [{ name: 'web', preStop: exec }],
          }),
        ),
      ).toEqual({ [GRACE]: '0', [PRESTOP]: '12' });
    });

    test('fields the plan does not write (the user owns them) are not mirrored', () => {
      // No grace (a user's longer one kept); the hook written only to another container.
      expect(
        mirroredAnnotations(
          plan({ servingContainer: 'web', containers: [{ name: 'worker', preStop: SLEEP }] }),
        ),
      ).toEqual({});
      // No serving container: nothing to say which hook the app has.
      expect(mirroredAnnotations(plan({ containers: [{ name: 'web', preStop: SLEEP }] }))).toEqual({});
      // A hook whose wait is unknowable (httpGet): no value to announce.
      expect(
        mirroredAnnotations(
          plan({
            servingContainer: 'web',
            containers: [{ name: 'web', preStop: { httpGet: { path: '/drain', port: 80 } } }],
          }),
        ),
      ).toEqual({});
    });
  });

  describe('withMirrorAnnotations', () => {
    const writes = plan({
      terminationGracePeriodSeconds: 45,
      servingContainer: 'web',
      containers: [{ name: 'web', preStop: SLEEP }],
    });

    test('a write that changes the pod template anyway writes them, new or stale', () => {
      const bare = deployment({ containers: [container('web', [8080])] });
      expect(withMirrorAnnotations(bare, writes).annotations).toEqual({ [GRACE]: '45', [PRESTOP]: '5' });
      const stale = deployment({
        grace: 30,
        containers: [container('web', [8080], { lifecycle: { preStop: SLEEP } })],
        templateAnnotations: { [GRACE]: '30', [PRESTOP]: '5', ...USER_ANNOTATION },
      });
      // The user's annotation is not named: server-side apply leaves it alone.
      expect(withMirrorAnnotations(stale, writes).annotations).toEqual({ [GRACE]: '45', [PRESTOP]: '5' });
    });

    test('the fields already right, the annotations missing: not written (no restart for them)', () => {
      const right = deployment({
        grace: 45,
        containers: [container('web', [8080], { lifecycle: { preStop: SLEEP } })],
      });
      expect(withMirrorAnnotations(right, writes)).toBe(writes);
      expect(withMirrorAnnotations(right, writes).annotations).toBeUndefined();
    });

    test('already there with the value: written, so owned, at no cost', () => {
      const right = deployment({
        grace: 45,
        containers: [container('web', [8080], { lifecycle: { preStop: SLEEP } })],
        templateAnnotations: { [GRACE]: '45', [PRESTOP]: '7' },
      });
      // The stale preStop mirror waits for a write that changes the template anyway.
      expect(withMirrorAnnotations(right, writes).annotations).toEqual({ [GRACE]: '45' });
    });

    test('an owned one that is stale keeps its current value when nothing else changes', () => {
      const d = deployment({
        grace: 45,
        containers: [container('web', [8080], { lifecycle: { preStop: SLEEP } })],
        templateAnnotations: { [GRACE]: '40', [PRESTOP]: '5' },
      });
      const kept = retainOwnedFields(d, owning, writes);
      expect(kept.annotations).toEqual({ [GRACE]: '40', [PRESTOP]: '5' });
      expect(withMirrorAnnotations(d, kept).annotations).toEqual({ [GRACE]: '40', [PRESTOP]: '5' });
    });

    test("a user's grace period (not planned) gets no annotation, even in a write", () => {
      const userGrace = deployment({ grace: 120, containers: [container('web', [8080])] });
      const p = plan({ servingContainer: 'web', containers: [{ name: 'web', preStop: SLEEP }] });
      expect(withMirrorAnnotations(userGrace, p).annotations).toEqual({ [PRESTOP]: '5' });
    });
  });

  describe('ownership record', () => {
    test('recordFor lists the annotations the plan writes; none: no entry', () => {
      const p = plan({ terminationGracePeriodSeconds: 45, annotations: { [PRESTOP]: '5', [GRACE]: '45' } });
      expect(recordFor({ name: 'p', generation: 1 }, p).templateAnnotations).toEqual([PRESTOP, GRACE].sort());
      expect(recordFor({ name: 'p', generation: 1 }, plan())).not.toHaveProperty('templateAnnotations');
    });

    test('read back; anything but the group keys is dropped', () => {
      const read = (value: unknown) =>
        readAppliedRecord(
          withAnnotation(
            deployment(),
            JSON.stringify({ policy: 'p', containers: {}, templateAnnotations: value }),
          ),
        )?.templateAnnotations;
      expect(read([GRACE, PRESTOP])).toEqual([GRACE, PRESTOP]);
      expect(read([GRACE, 7, null, 'example.com/other'])).toEqual([GRACE]);
      expect(read('not a list')).toBeUndefined();
      expect(read([])).toBeUndefined();
    });

    test('withoutOwnedFields removes the owned ones only', () => {
      const d = deployment({ templateAnnotations: { [GRACE]: '45', [PRESTOP]: '5', ...USER_ANNOTATION } });
      const stripped = withoutOwnedFields(d, { ...owning, templateAnnotations: [GRACE] });
      expect(stripped.spec?.template?.metadata?.annotations).toEqual({ [PRESTOP]: '5', ...USER_ANNOTATION });
      expect(d.spec?.template?.metadata?.annotations).toHaveProperty(GRACE);
    });

    test('retainOwnedFields keeps owned ones at their current values; gone or not owned: not named', () => {
      const d = deployment({ templateAnnotations: { [GRACE]: '45', ...USER_ANNOTATION } });
      expect(retainOwnedFields(d, owning, plan()).annotations).toEqual({ [GRACE]: '45' });
      const { templateAnnotations: _, ...ownsNone } = owning;
      expect(retainOwnedFields(d, ownsNone, plan())).not.toHaveProperty('annotations');
    });
  });

  test('applyConfiguration writes them on the pod template, beside the fields', () => {
    const p = plan({ terminationGracePeriodSeconds: 45, annotations: { [GRACE]: '45' } });
    expect(applyConfiguration(deployment(), recordFor({ name: 'p', generation: 1 }, p), p).spec).toEqual({
      template: {
        metadata: { annotations: { [GRACE]: '45' } },
        spec: { terminationGracePeriodSeconds: 45 },
      },
    });
  });

  describe('keepConfiguration', () => {
    const managed = deployment({
      grace: 45,
      containers: [container('web', [8080], { readinessProbe: PROBE, lifecycle: { preStop: SLEEP } })],
      templateAnnotations: { [GRACE]: '45', [PRESTOP]: '5', ...USER_ANNOTATION },
    });

    test('the record goes; owned annotations are kept at their values, like the fields they mirror', () => {
      const config = keepConfiguration(managed, owning);
      expect(config.metadata).toEqual({ name: 'web', namespace: 'shop' });
      expect(config.spec?.template.metadata).toEqual({ annotations: { [GRACE]: '45', [PRESTOP]: '5' } });
      expect(config.spec?.template.spec.terminationGracePeriodSeconds).toBe(45);
    });

    test('not owned (a record from before the annotations, or a user value): not named', () => {
      const { templateAnnotations: _, ...before } = owning;
      expect(keepConfiguration(managed, before).spec?.template).not.toHaveProperty('metadata');
    });

    test('an owned annotation removed since is not brought back', () => {
      const removed = deployment({ grace: 45, templateAnnotations: { [PRESTOP]: '5' } });
      expect(keepConfiguration(removed, owning).spec?.template.metadata).toEqual({
        annotations: { [PRESTOP]: '5' },
      });
    });
  });

  describe('handlerReplacements', () => {
    /** tcpSocket probe and exec hook on web: both replaced by the plan's. */
    const userHandlers = (options: { templateAnnotations?: Record<string, string>; grace?: number } = {}) =>
      deployment({
        containers: [
          container('web', [8080], {
            readinessProbe: { tcpSocket: { port: 8080 } },
            lifecycle: { preStop: USER_HOOK },
          }),
        ],
        grace: options.grace ?? 45,
        ...(options.templateAnnotations ? { templateAnnotations: options.templateAnnotations } : {}),
      });
    const replacing = (fields: Partial<ShutdownPlan> = {}) =>
      plan({
        terminationGracePeriodSeconds: 45,
        containers: [{ name: 'web', readinessProbe: PROBE, preStop: SLEEP }],
        servingContainer: 'web',
        annotations: { [GRACE]: '45', [PRESTOP]: '5' },
        ...fields,
      });
    const annotationOps = (ops: object[]) => ops.filter((op) => JSON.stringify(op).includes('annotations'));

    test('into an existing map: one add per changed key, the pointer escaped', () => {
      const d = userHandlers({ templateAnnotations: { ...USER_ANNOTATION, [PRESTOP]: '5' } });
      expect(annotationOps(handlerReplacements(d, replacing()))).toEqual([
        {
          op: 'add',
          path: '/spec/template/metadata/annotations/gracefulshutdown.dev~1termination-grace-period-seconds',
          value: '45',
        },
      ]);
    });

    test('no map yet: the whole map after the replacements, guarded by the resourceVersion', () => {
      const d = userHandlers();
      d.metadata = { ...d.metadata, resourceVersion: '42' };
      expect(handlerReplacements(d, replacing()).slice(3)).toEqual([
        { op: 'test', path: '/metadata/resourceVersion', value: '42' },
        { op: 'add', path: '/spec/template/metadata/annotations', value: { [GRACE]: '45', [PRESTOP]: '5' } },
      ]);
    });

    test('an annotation whose field only the apply writes waits for the apply', () => {
      // The grace period changes: the apply writes it and its annotation together.
      expect(annotationOps(handlerReplacements(userHandlers({ grace: 30 }), replacing()))).toEqual([
        { op: 'add', path: '/spec/template/metadata/annotations', value: { [PRESTOP]: '5' } },
      ]);
      // The serving hook is missing (same for a hook of the same kind): the apply adds it.
      const probeOnly = deployment({
        grace: 45,
        containers: [container('web', [8080], { readinessProbe: { tcpSocket: { port: 8080 } } })],
      });
      expect(annotationOps(handlerReplacements(probeOnly, replacing()))).toEqual([
        { op: 'add', path: '/spec/template/metadata/annotations', value: { [GRACE]: '45' } },
      ]);
    });

    test('no handler to replace: no patch at all (the apply writes the annotations)', () => {
      const sameKind = deployment({ containers: [container('web', [8080], { readinessProbe: USER_PROBE })] });
      expect(handlerReplacements(sameKind, replacing())).toEqual([]);
    });
  });
});
