// admit() on AdmissionRequests nobody here wrote: whatever the apiserver (or anyone who can
// reach the webhook port) sends, the decision is made without throwing, and a patch is a list of
// JSON Patch operations.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { EstimateCache } from '../latency/estimates.ts';
import { container, deployment, NEW_CLUSTER, policy, TEST_SEAL } from '../policy/test-fixtures.ts';
import { type AdmissionContext, type AdmissionRequest, admit } from './admission.ts';

const OUTCOMES = ['Skipped', 'Compliant', 'Mutated', 'Warned', 'Held', 'TooLarge'];

const context: AdmissionContext = {
  policies: {
    valid: [policy('enforce', { mode: 'Enforce' }), policy('audit', { mode: 'Audit', priority: 1 })],
    invalid: new Map(),
  },
  namespaceLabels: () => ({}),
  estimates: new EstimateCache(),
  facts: NEW_CLUSTER,
  breakerOpen: () => false,
  seal: TEST_SEAL,
  now: new Date('2026-12-07T00:00:00Z'),
};

const json = fc.jsonValue({ maxDepth: 5 });

/** Objects with the keys of a handler or a probe and arbitrary values. */
const handlerLike = fc.dictionary(fc.constantFrom('httpGet', 'tcpSocket', 'exec', 'grpc', 'sleep'), json, {
  maxKeys: 3,
});
const probeLike = fc.dictionary(
  fc.constantFrom(
    'httpGet',
    'tcpSocket',
    'exec',
    'grpc',
    'periodSeconds',
    'timeoutSeconds',
    'failureThreshold',
  ),
  fc.oneof(json, handlerLike),
  { maxKeys: 4 },
);

/** A Deployment-shaped object whose parts are arbitrary: the fields the planner reads. */
const deploymentLike = fc
  .record({
    name: fc.oneof(fc.string(), json),
    annotations: fc.oneof(fc.dictionary(fc.string(), fc.oneof(fc.string(), json)), json),
    grace: fc.oneof(fc.integer(), fc.double(), json),
    containers: fc.oneof(
      fc.array(
        fc.record({
          name: fc.oneof(fc.constantFrom('web', 'app', 'istio-proxy'), fc.string(), json),
          image: fc.oneof(fc.string(), json),
          ports: fc.oneof(
            fc.array(fc.record({ containerPort: fc.oneof(fc.integer(), json), name: json })),
            json,
          ),
          readinessProbe: fc.oneof(json, probeLike),
          livenessProbe: fc.oneof(json, probeLike),
          lifecycle: fc.oneof(json, fc.record({ preStop: fc.oneof(json, handlerLike) })),
        }),
        { maxLength: 4 },
      ),
      json,
    ),
  })
  .map(({ name, annotations, grace, containers }) => {
    const d = deployment({ containers: [container('web', [['http', 8080]])] }) as unknown as {
      metadata: Record<string, unknown>;
      spec: { template: { spec: Record<string, unknown> } };
    };
    d.metadata.name = name;
    d.metadata.annotations = annotations;
    d.spec.template.spec.terminationGracePeriodSeconds = grace;
    d.spec.template.spec.containers = containers;
    return d;
  });

describe('admit on hostile AdmissionRequests (property-based)', () => {
  test('never throws; answers a known outcome and a list of patch operations', () => {
    fc.assert(
      fc.property(
        fc.record({
          uid: fc.string(),
          kind: fc.oneof(fc.constant({ group: 'apps', version: 'v1', kind: 'Deployment' }), json),
          operation: fc.constantFrom('CREATE', 'UPDATE', 'DELETE', 'CONNECT', 'x'),
          namespace: fc.oneof(fc.string(), fc.constant('shop')),
          object: fc.oneof(deploymentLike, json),
          oldObject: fc.oneof(deploymentLike, json),
          options: json,
          userInfo: json,
        }),
        (request) => {
          const decision = admit(request as unknown as AdmissionRequest, context);
          expect(OUTCOMES).toContain(decision.outcome);
          expect(Array.isArray(decision.patch)).toBe(true);
          expect(Array.isArray(decision.warnings)).toBe(true);
        },
      ),
      { numRuns: 4000 },
    );
  });
});
