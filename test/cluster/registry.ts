// An OCI registry on 127.0.0.1 for the image push test: CNCF Distribution (what the `registry`
// image runs), built from its Go module (build.ts, buildRegistry), plain HTTP, filesystem
// storage in a directory of the caller's, stopped by its PID.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { type Component, freePort, ProcessGroup } from './processes.ts';

export class LocalRegistry {
  /** 127.0.0.1:PORT, as image references name it. */
  readonly host: string;
  readonly component: Component;
  private readonly processes: ProcessGroup;

  private constructor(host: string, component: Component, processes: ProcessGroup) {
    this.host = host;
    this.component = component;
    this.processes = processes;
  }

  /** Starts `registry serve` with its storage and log under dir; resolves once GET /v2/ answers 200. */
  static async start(opts: { binary: string; dir: string }): Promise<LocalRegistry> {
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const config = join(opts.dir, 'config.yml');
    await writeFile(
      config,
      stringify({
        version: 0.1,
        log: { level: 'warn', accesslog: { disabled: true } },
        storage: { filesystem: { rootdirectory: join(opts.dir, 'data') } },
        http: { addr: host },
      }),
    );
    const processes = new ProcessGroup();
    // Its OpenTelemetry tracing would export to an OTLP endpoint by default: none.
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', OTEL_TRACES_EXPORTER: 'none' };
    const component = processes.start(
      'registry',
      opts.binary,
      ['serve', config],
      join(opts.dir, 'registry.log'),
      env,
    );
    try {
      await processes.waitReady(
        component,
        async () => (await fetch(`http://${host}/v2/`)).status === 200,
        30_000,
      );
    } catch (err) {
      await processes.stopAll();
      throw err;
    }
    return new LocalRegistry(host, component, processes);
  }

  /** GET on the registry's API (path from /v2/...), as JSON. */
  async get<T>(path: string, accept?: string): Promise<T> {
    const response = await fetch(`http://${this.host}${path}`, accept ? { headers: { accept } } : {});
    if (!response.ok)
      throw new Error(`GET ${path} on the registry: HTTP ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  }

  stop(): Promise<void> {
    return this.processes.stopAll();
  }
}
