import nock from 'nock';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LeaseConflictError } from '../runtime/leader-election.ts';
import { createLeaseClient } from './lease-client.ts';
import { holdReply, jsonHeaders as json, testServer as server, testKubeConfig } from './testing.ts';

const path = '/apis/coordination.k8s.io/v1/namespaces/ops/leases/operator';
const signal = new AbortController().signal;

beforeAll(() => {
  nock.disableNetConnect();
});
afterEach(() => {
  nock.cleanAll();
});

describe('KubeLeaseClient', () => {
  const client = createLeaseClient(testKubeConfig(), { namespace: 'ops', name: 'operator' });

  it('reads a Lease into a record with Dates, and reports an absent one as undefined', async () => {
    // abortOptions keeps the client's own middleware (User-Agent).
    nock(server, { reqheaders: { 'user-agent': /^kubernetes-client-javascript\// } })
      .get(path)
      .reply(
        200,
        {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name: 'operator', namespace: 'ops', resourceVersion: '42' },
          spec: {
            holderIdentity: 'pod-a',
            leaseDurationSeconds: 15,
            acquireTime: '2025-01-02T03:04:05.123456Z',
            renewTime: '2025-01-02T03:04:07.000001Z',
            leaseTransitions: 3,
          },
        },
        json,
      )
      .get(path)
      .reply(404, { kind: 'Status', code: 404, reason: 'NotFound' }, json);
    const lease = await client.get(signal);
    expect(lease?.resourceVersion).toBe('42');
    expect(lease?.record.holderIdentity).toBe('pod-a');
    expect(lease?.record.leaseTransitions).toBe(3);
    expect(lease?.record.acquireTime?.toISOString()).toBe('2025-01-02T03:04:05.123Z');
    expect(lease?.record.renewTime).toBeInstanceOf(Date);
    expect(await client.get(signal)).toBeUndefined();
  });

  it('sends MicroTime with six fractional digits and the resourceVersion on replace', async () => {
    let sent: { metadata?: { resourceVersion?: string }; spec?: Record<string, unknown> } = {};
    nock(server)
      .put(path, (body) => {
        sent = body;
        return true;
      })
      .reply(
        200,
        {
          metadata: { name: 'operator', namespace: 'ops', resourceVersion: '43' },
          spec: { holderIdentity: 'pod-b', renewTime: '2025-01-02T03:04:05.678000Z' },
        },
        json,
      );
    const at = new Date('2025-01-02T03:04:05.678Z');
    const lease = await client.replace(
      {
        holderIdentity: 'pod-b',
        leaseDurationSeconds: 15,
        acquireTime: at,
        renewTime: at,
        leaseTransitions: 4,
      },
      '42',
      signal,
    );
    expect(sent.metadata?.resourceVersion).toBe('42');
    expect(sent.spec?.renewTime).toBe('2025-01-02T03:04:05.678000Z');
    expect(sent.spec?.acquireTime).toBe('2025-01-02T03:04:05.678000Z');
    expect(sent.spec?.holderIdentity).toBe('pod-b');
    expect(lease.resourceVersion).toBe('43');
    expect(lease.record.renewTime?.getTime()).toBe(at.getTime());
  });

  it('turns 409 on create and replace into LeaseConflictError (lost race), other errors into plain errors', async () => {
    const conflict = {
      kind: 'Status',
      code: 409,
      reason: 'Conflict',
      message: 'the object has been modified',
    };
    nock(server)
      .post('/apis/coordination.k8s.io/v1/namespaces/ops/leases')
      .reply(409, { ...conflict, reason: 'AlreadyExists' }, json)
      .put(path)
      .reply(409, conflict, json)
      .put(path)
      .reply(500, { kind: 'Status', code: 500, message: 'etcd timeout' }, json);
    const record = {
      holderIdentity: 'pod-a',
      leaseDurationSeconds: 15,
      acquireTime: new Date(),
      renewTime: new Date(),
      leaseTransitions: 0,
    };
    await expect(client.create(record, signal)).rejects.toBeInstanceOf(LeaseConflictError);
    await expect(client.replace(record, '1', signal)).rejects.toThrow(/the object has been modified/);
    const failure = await client.replace(record, '1', signal).catch((error: unknown) => error);
    expect(failure).not.toBeInstanceOf(LeaseConflictError);
    expect(String(failure)).toContain('etcd timeout');
  });

  it('aborting the signal aborts the request in flight (a renew past its deadline must not land)', async () => {
    const held = holdReply(200, { metadata: { resourceVersion: '43' }, spec: { holderIdentity: 'pod-a' } });
    nock(server).put(path).reply(held.reply);
    const abort = new AbortController();
    const record = {
      holderIdentity: 'pod-a',
      leaseDurationSeconds: 15,
      acquireTime: new Date(),
      renewTime: new Date(),
      leaseTransitions: 0,
    };
    const replacing = client.replace(record, '42', abort.signal);
    await held.arrived;
    abort.abort();
    await expect(replacing).rejects.toMatchObject({ cause: { name: 'AbortError' } });
    held.release();
  });
});
