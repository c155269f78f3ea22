import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { pino } from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import { createDemoService, type DemoService, INSTANCE_HEADER } from './app.ts';
import { loadConfig } from './config.ts';

function get(port: number, path: string): Promise<{ status?: number; body: string; instance?: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode, body, instance: res.headers[INSTANCE_HEADER] as string }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

let service: DemoService | undefined;
afterEach(() => {
  service?.server.closeAllConnections();
  service?.server.close();
  service = undefined;
});

async function start(env: Record<string, string> = {}) {
  const config = loadConfig({ LATENCY_PROFILE: 'fixed:1', PROPAGATION_DELAY_SECONDS: '0.3', ...env }, []);
  service = createDemoService(config, pino({ level: 'silent' }));
  await new Promise<void>((resolve) => service?.server.listen(0, '127.0.0.1', resolve));
  return { ...service, port: (service.server.address() as AddressInfo).port };
}

describe('demo-service routes', () => {
  test('work answers with the profile latency, or the ?ms= override', async () => {
    const { port } = await start();
    expect(await get(port, '/work')).toEqual({ status: 200, body: '{"ms":1}', instance: hostname() });
    expect(await get(port, '/work?ms=3')).toEqual({ status: 200, body: '{"ms":3}', instance: hostname() });
    expect((await get(port, '/nope')).status).toBe(404);
  });

  test('while draining, liveness stays 200 and readiness turns 503', async () => {
    const { drain, port } = await start();
    expect((await get(port, '/readyz')).status).toBe(200);
    const done = drain.drain('SIGTERM');
    expect((await get(port, '/healthz')).status).toBe(200);
    expect((await get(port, '/readyz')).status).toBe(503);
    expect((await done).outcome).toBe('drained');
  });

  test('metrics expose the names the operator scrapes', async () => {
    const { drain, metrics, port } = await start();
    await get(port, '/work?ms=2');
    const before = (await get(port, '/metrics')).body;
    expect(before).toContain(
      'http_request_duration_seconds_bucket{le="0.001",method="GET",route="/work",status_code="200"}',
    );
    expect(before).toContain(
      'http_request_duration_seconds_bucket{le="60",method="GET",route="/work",status_code="200"} 1',
    );
    expect(before).toMatch(/^http_requests_in_flight 1$/m); // the /metrics request itself
    expect(before).toMatch(/^http_server_drain_phase 0$/m);
    expect(before).toMatch(/^http_server_forced_closes_total 0$/m);
    expect(before).toContain('# TYPE http_server_shutdown_duration_seconds gauge');
    const drained = drain.drain('SIGTERM');
    expect((await get(port, '/metrics')).body).toMatch(/^http_server_drain_phase 1$/m);
    metrics.recordDrain(await drained);
    const after = await metrics.registry.metrics();
    expect(after).toMatch(/^http_server_drain_phase 3$/m);
    expect(after).toMatch(/^http_server_shutdown_duration_seconds 0\.\d+$/m);
  });
});
