import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { APPLIED_ANNOTATION } from '../api/annotations.ts';
import { type AppliedRecord, RECORD_REFUSED, readAppliedRecord, recordAnnotation } from './ownership.ts';
import { RecordSeal, stableJson } from './record-seal.ts';
import { deployment, TEST_SEAL } from './test-fixtures.ts';

const RECORD: AppliedRecord = {
  policy: 'p',
  policyGeneration: 3,
  terminationGracePeriodSeconds: 45,
  containers: { web: { readinessProbe: true, preStop: true } },
  reason: 'drain 30s',
  rollout: {
    generation: 7,
    startedAt: '2026-12-07T08:00:00.000Z',
    previous: { terminationGracePeriodSeconds: 30, containers: { web: { readinessProbe: null } } },
  },
  failure: {
    policyGeneration: 3,
    reason: 'RolloutTimedOut',
    message: 'stuck',
    at: '2026-12-07T08:10:00.000Z',
  },
  conflict: {
    manager: 'argocd-controller',
    field: 'preStop',
    container: 'web',
    at: '2026-12-07T08:05:00.000Z',
  },
};

const web = deployment({ name: 'web', uid: 'uid-web' });
const withText = (text: string, uid = 'uid-web') =>
  deployment({ name: 'web', uid, annotations: { [APPLIED_ANNOTATION]: text } });
const sealedText = recordAnnotation(web, RECORD, TEST_SEAL);

describe('the seal on the operator record', () => {
  test('a record the operator sealed for this Deployment is read whole, with nothing refused', () => {
    expect(readAppliedRecord(withText(sealedText), TEST_SEAL)).toEqual(RECORD);
  });

  test('a record with no seal (a tenant wrote it): rollout, failure and conflict dropped, the refusal said', () => {
    const forged = withText(JSON.stringify(RECORD));
    const read = readAppliedRecord(forged, TEST_SEAL);
    expect(read).toMatchObject({
      policy: 'p',
      containers: RECORD.containers,
      refused: RECORD_REFUSED.unsealed,
    });
    expect(read).not.toHaveProperty('rollout');
    expect(read).not.toHaveProperty('failure');
    expect(read).not.toHaveProperty('conflict');
  });

  test('copied to another Deployment, edited, or sealed with another key: refused', () => {
    const parsed = JSON.parse(sealedText);
    const edits: [string, string][] = [
      ['copied', sealedText],
      ['a later generation', JSON.stringify({ ...parsed, rollout: { ...parsed.rollout, generation: 8 } })],
      // null ("absent before": Revert removes the probe) left out would make Revert keep it.
      [
        'a null dropped',
        JSON.stringify({
          ...parsed,
          rollout: { ...parsed.rollout, previous: { terminationGracePeriodSeconds: 30 } },
        }),
      ],
      ['a failure added', JSON.stringify({ ...parsed, failure: { ...parsed.failure, message: 'x' } })],
      ['another key', recordAnnotation(web, RECORD, new RecordSeal(Buffer.alloc(32, 9)))],
    ];
    for (const [what, text] of edits) {
      const read = readAppliedRecord(withText(text, what === 'copied' ? 'uid-other' : 'uid-web'), TEST_SEAL);
      expect(read?.refused, what).toBe(RECORD_REFUSED.mismatch);
      expect(read?.rollout, what).toBeUndefined();
      expect(read?.failure, what).toBeUndefined();
    }
  });

  test('a record with none of the sealed parts needs no seal (a webhook write at CREATE, an older release)', () => {
    const { rollout: _r, failure: _f, conflict: _c, ...plain } = RECORD;
    expect(readAppliedRecord(withText(JSON.stringify(plain)), TEST_SEAL)).toEqual(plain);
  });

  test('read without a seal to check it with (the CLI): the sealed parts are dropped, nothing refused', () => {
    const read = readAppliedRecord(withText(sealedText));
    expect(read).not.toHaveProperty('rollout');
    expect(read).not.toHaveProperty('refused');
  });

  test('written to a Deployment with no UID yet (admission of a CREATE): no seal and no sealed parts', () => {
    const created = deployment({ name: 'web' });
    created.metadata = { ...created.metadata, uid: undefined };
    const text = recordAnnotation(created, RECORD, TEST_SEAL);
    expect(JSON.parse(text)).not.toHaveProperty('seal');
    expect(JSON.parse(text)).not.toHaveProperty('rollout');
    expect(JSON.parse(text)).not.toHaveProperty('failure');
  });

  test('why a record was refused is never written back', () => {
    const text = recordAnnotation(web, { ...RECORD, refused: 'x' }, TEST_SEAL);
    expect(JSON.parse(text)).not.toHaveProperty('refused');
    expect(readAppliedRecord(withText(text), TEST_SEAL)).toEqual(RECORD);
  });

  test('a key shorter than 32 bytes is refused', () => {
    expect(() => new RecordSeal(Buffer.alloc(16))).toThrow(/16 bytes; at least 32/);
  });

  test('stableJson gives the bytes the seals of existing records were made over', () => {
    const sample = {
      z: 1,
      a: [3, null, { y: 'é', b: null, c: [] }],
      m: { é: true, B: false, b: 0.5 },
      n: null,
      s: 'q"uote',
    };
    expect(stableJson(sample)).toBe(
      '{"a":[3,null,{"b":null,"c":[],"y":"é"}],"m":{"B":false,"b":0.5,"é":true},"n":null,"s":"q\\"uote","z":1}',
    );
  });

  test('stableJson sorts keys at every level and keeps null', () => {
    expect(stableJson({ b: 1, a: { d: null, c: [2, { f: 1, e: 0 }] }, u: undefined })).toBe(
      '{"a":{"c":[2,{"e":0,"f":1}],"d":null},"b":1}',
    );
  });
});

describe('the record parser on hostile input (property-based)', () => {
  const json = fc.jsonValue({ maxDepth: 4 });

  test('never throws, and never returns a sealed part without a valid seal', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          json.map((v) => JSON.stringify(v)),
          // Records shaped like the operator's, with arbitrary members and a made-up seal.
          fc
            .record({
              policy: fc.oneof(fc.string(), json),
              containers: fc.oneof(fc.dictionary(fc.string(), json), json),
              rollout: json,
              failure: json,
              conflict: json,
              seal: fc.oneof(fc.string(), fc.constant(`v1:${'A'.repeat(43)}`)),
            })
            .map((v) => JSON.stringify(v)),
        ),
        (text) => {
          const read = readAppliedRecord(withText(text), TEST_SEAL);
          if (read === undefined) return;
          expect(read.rollout).toBeUndefined();
          expect(read.failure).toBeUndefined();
          expect(read.conflict).toBeUndefined();
          expect(typeof read.policy).toBe('string');
        },
      ),
      { numRuns: 2000 },
    );
  });

  test('a sealed record survives any reordering of its keys, and no single change to it', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 20 }), fc.nat(1000), (message, generation) => {
        const record: AppliedRecord = {
          ...RECORD,
          rollout: { ...(RECORD.rollout as NonNullable<AppliedRecord['rollout']>), generation },
          failure: { ...(RECORD.failure as NonNullable<AppliedRecord['failure']>), message },
        };
        const text = recordAnnotation(web, record, TEST_SEAL);
        const parsed = JSON.parse(text) as Record<string, unknown>;
        const reordered = JSON.stringify(Object.fromEntries(Object.entries(parsed).reverse()));
        expect(readAppliedRecord(withText(reordered), TEST_SEAL)?.refused).toBeUndefined();
        const changed = JSON.stringify({
          ...parsed,
          rollout: { ...record.rollout, generation: generation + 1 },
        });
        expect(readAppliedRecord(withText(changed), TEST_SEAL)?.refused).toBe(RECORD_REFUSED.mismatch);
      }),
      { numRuns: 300 },
    );
  });
});
