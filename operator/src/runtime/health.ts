import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

/** A named check: resolve to pass, throw (with the reason as message) to fail. */
export type HealthCheck = () => void | Promise<void>;

export interface CheckResult {
  name: string;
  error?: string;
}

/** A set of named checks behind one endpoint, like controller-runtime's healthz.Handler. */
export class HealthChecks {
  readonly #checks = new Map<string, HealthCheck>();

  add(name: string, check: HealthCheck): this {
    if (this.#checks.has(name)) throw new Error(`health check ${name} already added`);
    this.#checks.set(name, check);
    return this;
  }

  names(): string[] {
    return [...this.#checks.keys()];
  }

  /** Runs the named check, or all of them; a check that throws has failed. */
  async run(only?: string): Promise<CheckResult[] | undefined> {
    const selected =
      only === undefined ? [...this.#checks] : [...this.#checks].filter(([name]) => name === only);
    if (only !== undefined && selected.length === 0) return undefined;
    return Promise.all(
      selected.map(async ([name, check]) => {
        try {
          await check();
          return { name };
        } catch (error) {
          return { name, error: error instanceof Error ? error.message : String(error) };
        }
      }),
    );
  }
}

export interface ListeningServer {
  readonly port: number;
  /** `http://host:port` */
  readonly url: string;
  close(): Promise<void>;
}

export interface ListenAddress {
  /** Interface to bind; `0.0.0.0` in a pod, `127.0.0.1` in tests. */
  host: string;
  /** 0 picks a free port (tests). */
  port: number;
}

export interface ProbeServerOptions extends ListenAddress {
  healthz: HealthChecks;
  readyz: HealthChecks;
  /** Also serve /metrics here (when no separate metrics port is wanted). */
  registry?: Registry;
}

/** `/healthz` and `/readyz` (kubebuilder: port 8081): 200 "ok" when all checks pass, else 500 with the reasons. */
export function startProbeServer(options: ProbeServerOptions): Promise<ListeningServer> {
  const endpoints = new Map([
    ['/healthz', options.healthz],
    ['/readyz', options.readyz],
  ]);
  return listen(options, async (request, response) => {
    const url = new URL(request.url ?? '/', 'http://probe');
    if (url.pathname === '/metrics' && options.registry !== undefined) {
      await serveMetrics(options.registry, response);
      return;
    }
    const [, endpoint = '', only] = url.pathname.split('/');
    const checks = endpoints.get(`/${endpoint}`);
    if (checks === undefined || url.pathname.split('/').length > 3) {
      send(response, 404, 'not found\n');
      return;
    }
    const results = await checks.run(only);
    if (results === undefined) {
      send(response, 404, `no such check: ${only}\n`);
      return;
    }
    const failed = results.filter((result) => result.error !== undefined);
    if (failed.length === 0 && !url.searchParams.has('verbose')) {
      send(response, 200, 'ok');
      return;
    }
    const lines = results.map((result) =>
      result.error === undefined ? `[+]${result.name} ok` : `[-]${result.name} failed: ${result.error}`,
    );
    lines.push(failed.length === 0 ? `${endpoint} check passed` : `${endpoint} check failed`);
    send(response, failed.length === 0 ? 200 : 500, `${lines.join('\n')}\n`);
  });
}

export interface MetricsServerOptions extends ListenAddress {
  registry: Registry;
}

/** `/metrics` in the Prometheus text format, on its own port (kubebuilder: 8080). */
export function startMetricsServer(options: MetricsServerOptions): Promise<ListeningServer> {
  return listen(options, async (request, response) => {
    const url = new URL(request.url ?? '/', 'http://metrics');
    if (url.pathname !== '/metrics') {
      send(response, 404, 'not found\n');
      return;
    }
    await serveMetrics(options.registry, response);
  });
}

async function serveMetrics(registry: Registry, response: ServerResponse): Promise<void> {
  const body = await registry.metrics();
  response.writeHead(200, { 'content-type': registry.contentType });
  response.end(body);
}

function send(response: ServerResponse, status: number, body: string): void {
  response.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'x-content-type-options': 'nosniff',
  });
  response.end(body);
}

function listen(
  address: ListenAddress,
  handle: (request: IncomingMessage, response: ServerResponse) => Promise<void>,
): Promise<ListeningServer> {
  const server: Server = createServer((request, response) => {
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      send(response, 405, 'method not allowed\n');
      return;
    }
    handle(request, response).catch((error: unknown) => {
      if (!response.headersSent)
        send(response, 500, `${error instanceof Error ? error.message : String(error)}\n`);
      else response.destroy();
    });
  });
  // Probes are short requests; don't let an idle keep-alive connection hold up shutdown.
  server.keepAliveTimeout = 1_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      const { port } = server.address() as AddressInfo;
      const host = address.host.includes(':') ? `[${address.host}]` : address.host;
      resolve({
        port,
        url: `http://${host}:${port}`,
        close: () =>
          new Promise<void>((done, fail) => {
            server.close((error) => (error ? fail(error) : done()));
            server.closeIdleConnections();
          }),
      });
    });
  });
}
