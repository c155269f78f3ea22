import type { V1Deployment, V1LifecycleHandler, V1Probe } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import { APPLIED_ANNOTATION } from '../api/annotations.ts';
import { desiredSettings } from './desired.ts';
import {
  type AppliedRecord,
  applyConfiguration,
  handlerReplacements,
  readAppliedRecord,
  recordFor,
  releaseConfiguration,
  retainOwnedFields,
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

const drain = { seconds: 0, reason: 'LatencySourceNone', message: 'drain 0 s' };

/** A plan built by hand: only the fields given are written. */
function plan(fields: Partial<ShutdownPlan> = {}): ShutdownPlan {
  return { containers: [], recommended: {}, drain, notes: [], ...fields };
}

const withAnnotation = (d: V1Deployment, value: string): V1Deployment => {
  const copy = structuredClone(d);
  copy.metadata = { ...copy.metadata, annotations: { [APPLIED_ANNOTATION]: value } };
  return copy;
};

describe('readAppliedRecord', () => {
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

describe('releaseConfiguration', () => {
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
    expect(releaseConfiguration(d, record)).toEqual({
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
    const config = releaseConfiguration(d, record);
    expect(config.metadata).not.toHaveProperty('annotations');
  });

  test('skips containers that no longer exist', () => {
    const names = releaseConfiguration(d, record).spec?.template.spec.containers as { name: string }[];
    expect(names.map((c) => c.name)).toEqual(['web', 'worker']);
  });

  test('the grace period only if owned', () => {
    const { terminationGracePeriodSeconds: _, ...withoutGrace } = record;
    const config = releaseConfiguration(d, withoutGrace);
    expect(config.spec?.template.spec).not.toHaveProperty('terminationGracePeriodSeconds');
  });

  test('an owned field the user removed since is not named', () => {
    const edited = structuredClone(d);
    const web = edited.spec?.template?.spec?.containers[0];
    if (web) web.readinessProbe = undefined;
    const config = releaseConfiguration(edited, { ...record, containers: { web: { readinessProbe: true } } });
    // No field left to keep: only the grace period.
    expect(config.spec).toEqual({ template: { spec: { terminationGracePeriodSeconds: 75 } } });
  });

  test('nothing owned any more: metadata only', () => {
    const config = releaseConfiguration(d, { policy: 'p', policyGeneration: 1, containers: {}, reason: '' });
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
