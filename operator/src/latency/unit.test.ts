import { describe, expect, test } from 'vitest';
import { secondsPerUnit, unitOf } from './unit.ts';

describe('unitOf', () => {
  test.each([
    ['http_request_duration_seconds', undefined, 'Seconds'],
    ['http_server_request_duration_seconds', undefined, 'Seconds'],
    ['istio_request_duration_milliseconds', undefined, 'Milliseconds'],
    ['response_latency_ms', undefined, 'Milliseconds'],
    // Envoy's name does not say: the policy has to.
    ['envoy_cluster_upstream_rq_time', undefined, 'Seconds'],
    ['envoy_cluster_upstream_rq_time', 'Milliseconds', 'Milliseconds'],
    // The field wins over the name.
    ['istio_request_duration_milliseconds', 'Seconds', 'Seconds'],
    // Only a suffix counts.
    ['ms_requests_seconds', undefined, 'Seconds'],
  ] as const)('%s with unit %s: %s', (metric, unit, expected) => {
    expect(unitOf({ metric, ...(unit ? { unit } : {}) })).toBe(expected);
    expect(secondsPerUnit(expected)).toBe(expected === 'Seconds' ? 1 : 0.001);
  });
});
