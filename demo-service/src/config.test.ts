import { describe, expect, test } from 'vitest';
import { loadConfig } from './config.ts';

describe('loadConfig', () => {
  test('defaults fit a pod without a preStop: 30 s grace, 2 s margin, Node keep-alive timeout', () => {
    const config = loadConfig({}, []);
    expect(config).toMatchObject({
      DEMO_PROTOCOL: 'http',
      PORT: 8080,
      HOST: '0.0.0.0',
      PROPAGATION_DELAY_SECONDS: 0,
      TERMINATION_GRACE_PERIOD_SECONDS: 30,
      PRESTOP_SECONDS: 0,
      DRAIN_MARGIN_SECONDS: 2,
      KEEP_ALIVE_TIMEOUT_SECONDS: 5,
      HEADERS_TIMEOUT_SECONDS: 10,
      MAX_CONNECTIONS: 1000,
      latency: { kind: 'lognormal', p50Ms: 20, p99Ms: 250 },
    });
  });

  test('flags win over env, empty env values count as unset', () => {
    const config = loadConfig(
      { PORT: '9000', TERMINATION_GRACE_PERIOD_SECONDS: '', LATENCY_PROFILE: 'fixed:5' },
      ['--port', '9100', '--latency-profile', 'uniform:1-2'],
    );
    expect(config.PORT).toBe(9100);
    expect(config.TERMINATION_GRACE_PERIOD_SECONDS).toBe(30);
    expect(config.latency).toEqual({ kind: 'uniform', minMs: 1, maxMs: 2 });
  });

  test('rejects nonsense', () => {
    expect(() => loadConfig({ PORT: 'eighty' }, [])).toThrow();
    expect(() => loadConfig({ PROPAGATION_DELAY_SECONDS: '-1' }, [])).toThrow();
    expect(() => loadConfig({}, ['--no-such-flag'])).toThrow();
    expect(() => loadConfig({ LATENCY_PROFILE: 'gaussian:3' }, [])).toThrow(/unknown latency profile/);
    expect(() => loadConfig({ DEMO_PROTOCOL: 'mqtt' }, [])).toThrow(/DEMO_PROTOCOL/);
    // 0 would turn Node's header timeout off, and with it the bound on slow clients.
    expect(() => loadConfig({ HEADERS_TIMEOUT_SECONDS: '0' }, [])).toThrow(/HEADERS_TIMEOUT_SECONDS/);
    expect(() => loadConfig({ MAX_CONNECTIONS: '0' }, [])).toThrow(/MAX_CONNECTIONS/);
    expect(() => loadConfig({}, ['--max-connections', '1.5'])).toThrow(/MAX_CONNECTIONS/);
  });

  test('DEMO_PROTOCOL selects the gRPC or Redis-protocol fixture', () => {
    expect(loadConfig({ DEMO_PROTOCOL: 'grpc' }, []).DEMO_PROTOCOL).toBe('grpc');
    expect(loadConfig({}, ['--demo-protocol', 'redis']).DEMO_PROTOCOL).toBe('redis');
  });
});
