import { CustomObjectsApi } from '@kubernetes/client-node';
import nock from 'nock';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { GracefulShutdownPolicyStatus } from '../api/policy.ts';
import { ConflictError } from '../runtime/controller.ts';
import { createPolicyStatusWriter } from './status.ts';
import { holdReply, jsonHeaders, testKubeConfig, testServer } from './testing.ts';

const path = '/apis/gracefulshutdown.dev/v1alpha1/gracefulshutdownpolicies/web/status';
const status: GracefulShutdownPolicyStatus = {
  observedGeneration: 3,
  counts: { matched: 1, compliant: 1, nonCompliant: 0, exempt: 0 },
};

beforeAll(() => {
  nock.disableNetConnect();
});
afterEach(() => {
  nock.cleanAll();
});

describe('PolicyStatusWriter', () => {
  const writer = createPolicyStatusWriter(testKubeConfig().makeApiClient(CustomObjectsApi));

  it('sends a merge patch carrying the resourceVersion the status was computed from', async () => {
    let sent: unknown;
    nock(testServer, { reqheaders: { 'content-type': 'application/merge-patch+json' } })
      .patch(path, (body) => {
        sent = body;
        return true;
      })
      .reply(200, { metadata: { name: 'web', resourceVersion: '8' } }, jsonHeaders);
    await writer.write('web', status, { resourceVersion: '7', signal: new AbortController().signal });
    expect(sent).toEqual({
      metadata: { resourceVersion: '7' },
      status: {
        workloads: null,
        observedGeneration: 3,
        // Enforce-only counts not reported (Audit now) are cleared, not left from before.
        counts: {
          matched: 1,
          compliant: 1,
          nonCompliant: 0,
          exempt: 0,
          applied: null,
          waiting: null,
          waitingReasons: null,
          blockedByBreaker: null,
          killed: null,
        },
      },
    });
  });

  it('refuses to write without a resourceVersion (the write would be unconditional)', async () => {
    // No interceptor: a request would fail with a different error.
    await expect(
      writer.write('web', status, { resourceVersion: undefined, signal: new AbortController().signal }),
    ).rejects.toThrow('writing status of policy web: no resourceVersion to send');
  });

  it('turns 409 (the policy changed since) into a ConflictError, other failures into themselves', async () => {
    nock(testServer)
      .patch(path)
      .reply(
        409,
        { kind: 'Status', code: 409, reason: 'Conflict', message: 'the object has been modified' },
        jsonHeaders,
      )
      .patch(path)
      .reply(500, { kind: 'Status', code: 500, message: 'etcd timeout' }, jsonHeaders);
    const options = { resourceVersion: '7', signal: new AbortController().signal };
    const conflict = writer.write('web', status, options);
    await expect(conflict).rejects.toBeInstanceOf(ConflictError);
    await expect(conflict).rejects.toThrow(/the object has been modified/);
    const failure = await writer.write('web', status, options).catch((error: unknown) => error);
    expect(failure).not.toBeInstanceOf(ConflictError);
    expect(failure).toMatchObject({ code: 500 });
  });

  it('aborting the signal aborts the request in flight', async () => {
    const held = holdReply(200, { metadata: { name: 'web' } });
    nock(testServer).patch(path).reply(held.reply);
    const abort = new AbortController();
    const writing = writer.write('web', status, { resourceVersion: '7', signal: abort.signal });
    await held.arrived;
    abort.abort();
    await expect(writing).rejects.toMatchObject({ name: 'AbortError' });
    held.release();
  });
});
