import { afterEach, describe, expect, it } from 'vitest';
import { HealthChecks, type ListeningServer, startMetricsServer, startProbeServer } from './health.ts';
import { createRuntimeMetrics } from './metrics.ts';

const servers: ListeningServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function probeServer(healthz: HealthChecks, readyz: HealthChecks): Promise<ListeningServer> {
  const server = await startProbeServer({ host: '127.0.0.1', port: 0, healthz, readyz });
  servers.push(server);
  return server;
}

async function get(url: string): Promise<{ status: number; body: string }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.text() };
}

describe('probe server', () => {
  it('/healthz answers 200 ok while its checks pass', async () => {
    const server = await probeServer(
      new HealthChecks().add('ping', () => {}),
      new HealthChecks(),
    );
    expect(await get(`${server.url}/healthz`)).toEqual({ status: 200, body: 'ok' });
  });

  it('/readyz answers 500 with the reason until the caches have synced, then 200', async () => {
    let synced = false;
    const readyz = new HealthChecks().add('informers', () => {
      if (!synced) throw new Error('not synced: deployments');
    });
    const server = await probeServer(new HealthChecks(), readyz);
    const before = await get(`${server.url}/readyz`);
    expect(before.status).toBe(500);
    expect(before.body).toContain('[-]informers failed: not synced: deployments');
    synced = true;
    expect(await get(`${server.url}/readyz`)).toEqual({ status: 200, body: 'ok' });
  });

  it('awaits asynchronous checks and lists every check with ?verbose', async () => {
    const healthz = new HealthChecks()
      .add('ping', () => {})
      .add('slow', async () => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        throw new Error('wedged');
      });
    const server = await probeServer(healthz, new HealthChecks());
    const response = await get(`${server.url}/healthz?verbose`);
    expect(response.status).toBe(500);
    expect(response.body).toContain('[+]ping ok');
    expect(response.body).toContain('[-]slow failed: wedged');
  });

  it('serves one check by name, and 404 for unknown checks and paths', async () => {
    const healthz = new HealthChecks()
      .add('ping', () => {})
      .add('broken', () => {
        throw new Error('no');
      });
    const server = await probeServer(healthz, new HealthChecks());
    expect((await get(`${server.url}/healthz/ping`)).status).toBe(200);
    expect((await get(`${server.url}/healthz/broken`)).status).toBe(500);
    expect((await get(`${server.url}/healthz/nope`)).status).toBe(404);
    expect((await get(`${server.url}/other`)).status).toBe(404);
  });
});

describe('metrics server', () => {
  it('serves the registry in the Prometheus text format on its own port, with controller-runtime names', async () => {
    const metrics = createRuntimeMetrics();
    metrics.workQueue('deployment');
    metrics.reconcileTotal.inc({ controller: 'deployment', result: 'success' });
    const server = await startMetricsServer({ host: '127.0.0.1', port: 0, registry: metrics.registry });
    servers.push(server);
    const response = await fetch(`${server.url}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/plain');
    const body = await response.text();
    for (const name of [
      'controller_runtime_reconcile_total',
      'controller_runtime_reconcile_errors_total',
      'controller_runtime_reconcile_time_seconds',
      'workqueue_depth',
      'workqueue_adds_total',
      'workqueue_queue_duration_seconds',
      'workqueue_work_duration_seconds',
      'workqueue_retries_total',
      'workqueue_unfinished_work_seconds',
      'workqueue_longest_running_processor_seconds',
      'leader_election_master_status',
      'process_cpu_user_seconds_total',
      'nodejs_eventloop_lag_seconds',
    ]) {
      expect(body).toContain(`# TYPE ${name} `);
    }
    expect(body).toContain('controller_runtime_reconcile_total{controller="deployment",result="success"} 1');
    expect((await get(`${server.url}/healthz`)).status).toBe(404);
  });
});
