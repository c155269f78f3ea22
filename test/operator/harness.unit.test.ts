// What counts as gone for waitGone: only the apiserver's NotFound for an object it names.
import { ApiException } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import { isNotFound, waitGone } from './harness.ts';

/** A failed call as client-node reports it: the status code and the response body as text. */
const failed = (code: number, body: unknown) =>
  new ApiException(code, 'failed', typeof body === 'string' ? body : JSON.stringify(body), {});

const objectNotFound = failed(404, {
  kind: 'Status',
  apiVersion: 'v1',
  status: 'Failure',
  message: 'reports.openreports.io "gsp-reports" not found',
  reason: 'NotFound',
  details: { name: 'gsp-reports', group: 'openreports.io', kind: 'reports' },
  code: 404,
});
/** What kube-apiserver 1.37 answers for a group it does not serve (the CRD deleted, say). */
const groupNotServed = failed(404, '404 page not found\n');
/** A NotFound that names no object. */
const resourceNotFound = failed(404, {
  kind: 'Status',
  apiVersion: 'v1',
  status: 'Failure',
  message: 'the server could not find the requested resource',
  reason: 'NotFound',
  details: {},
  code: 404,
});
const forbidden = failed(403, {
  kind: 'Status',
  status: 'Failure',
  message: 'reports.openreports.io "gsp-reports" is forbidden',
  reason: 'Forbidden',
  details: { name: 'gsp-reports', group: 'openreports.io', kind: 'reports' },
  code: 403,
});

describe('isNotFound', () => {
  test('a NotFound naming the object is gone', () => {
    expect(isNotFound(objectNotFound)).toBe(true);
  });

  test('a group not served, a NotFound naming no object, a 403 and a connection error are not', () => {
    expect(isNotFound(groupNotServed)).toBe(false);
    expect(isNotFound(resourceNotFound)).toBe(false);
    expect(isNotFound(forbidden)).toBe(false);
    expect(isNotFound(new Error('connect ECONNREFUSED 127.0.0.1:6443'))).toBe(false);
  });
});

describe('waitGone', () => {
  test('waits while the object is read, ends at NotFound', async () => {
    let reads = 0;
    await waitGone(
      'the report',
      async () => {
        reads++;
        if (reads === 3) throw objectNotFound;
      },
      { intervalMs: 1 },
    );
    expect(reads).toBe(3);
  });

  test('fails at once, naming the error, when the object cannot be read', async () => {
    let reads = 0;
    const read = async () => {
      reads++;
      throw forbidden;
    };
    await expect(waitGone('the report', read, { intervalMs: 1 })).rejects.toThrow(
      'the report could not be read, which is not gone: HTTP 403 Forbidden reports.openreports.io "gsp-reports" is forbidden',
    );
    await expect(waitGone('the report', async () => Promise.reject(groupNotServed))).rejects.toThrow(
      'the report could not be read, which is not gone: HTTP 404 404 page not found',
    );
    expect(reads).toBe(1);
  });

  test('fails when the object is still there at the deadline', async () => {
    await expect(waitGone('the report', async () => ({}), { timeoutMs: 20, intervalMs: 5 })).rejects.toThrow(
      'timed out waiting for the report to be gone: it is still there',
    );
  });
});
