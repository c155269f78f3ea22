// Runs the operator as a separate process (as in a pod): `node operator/src/main.ts` with a
// kubeconfig of its own ServiceAccount, so every request goes through the shipped RBAC.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { freePort } from '../cluster/processes.ts';
import { repoRoot } from './install.ts';

export interface OperatorProcessOptions {
  kubeconfig: string;
  logPath: string;
  identity?: string;
  /** Extra flags, e.g. ['--resync-ms', '2000']. */
  args?: string[];
  /** Flags for node itself, before the script, e.g. ['--cpu-prof', '--cpu-prof-dir', dir]. */
  nodeArgs?: string[];
  /**
   * The script to run: the TypeScript source by default (type stripping), or the compiled
   * `dist/operator/src/main.js` the image runs (the benchmark's memory figures).
   */
  entry?: string;
}

export class OperatorProcess {
  readonly child: ChildProcess;
  readonly probePort: number;
  readonly metricsPort: number;
  /** The admission webhook's HTTPS port on 127.0.0.1 (its certificate covers 127.0.0.1). */
  readonly webhookPort: number;
  readonly logPath: string;
  readonly identity: string;
  #exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(
    child: ChildProcess,
    probePort: number,
    metricsPort: number,
    webhookPort: number,
    logPath: string,
    identity: string,
  ) {
    this.child = child;
    this.probePort = probePort;
    this.metricsPort = metricsPort;
    this.webhookPort = webhookPort;
    this.logPath = logPath;
    this.identity = identity;
    this.#exit = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  static async start(options: OperatorProcessOptions): Promise<OperatorProcess> {
    const probePort = await freePort();
    const metricsPort = await freePort();
    const webhookPort = await freePort();
    const identity = options.identity ?? `operator-${probePort}`;
    const fd = openSync(options.logPath, 'a');
    let child: ChildProcess;
    try {
      child = spawn(
        process.execPath,
        [
          ...(options.nodeArgs ?? []),
          options.entry ?? join(repoRoot, 'operator', 'src', 'main.ts'),
          '--kubeconfig',
          options.kubeconfig,
          '--namespace',
          'graceful-shutdown-system',
          '--identity',
          identity,
          '--probe-address',
          `127.0.0.1:${probePort}`,
          '--metrics-address',
          `127.0.0.1:${metricsPort}`,
          '--webhook-address',
          `127.0.0.1:${webhookPort}`,
          '--webhook-host',
          '127.0.0.1',
          ...(options.args ?? []),
        ],
        { stdio: ['ignore', fd, fd], env: { ...process.env, KUBECONFIG: undefined } },
      );
    } finally {
      closeSync(fd);
    }
    const operator = new OperatorProcess(
      child,
      probePort,
      metricsPort,
      webhookPort,
      options.logPath,
      identity,
    );
    process.once('exit', () => child.kill('SIGKILL'));
    return operator;
  }

  /** Resolves once /readyz answers 200 (caches synced); fails if the process exits first. */
  async waitReady(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.exited)
        throw new Error(`operator exited before it was ready; log: ${this.logPath}\n${this.logTail()}`);
      const ok = await fetch(`http://127.0.0.1:${this.probePort}/readyz`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) return;
      await sleep(200);
    }
    throw new Error(`operator not ready after ${timeoutMs} ms; log: ${this.logPath}\n${this.logTail()}`);
  }

  /** The operator's /metrics text. */
  async metrics(): Promise<string> {
    const response = await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`);
    return response.text();
  }

  /** Sum of a counter's or gauge's samples whose labels include every given label. */
  async sample(name: string, labels: Record<string, string> = {}): Promise<number> {
    const [value] = await this.samples([name], labels);
    return value as number;
  }

  /** sample() of several metrics from one scrape (for those a scrape resets, e.g. event-loop lag). */
  async samples(names: string[], labels: Record<string, string> = {}): Promise<number[]> {
    const families = parsePrometheusTextFormat(await this.metrics());
    return names.map((name) => {
      let sum = 0;
      for (const sample of families.find((f) => f.name === name)?.metrics ?? []) {
        if (Object.entries(labels).every(([k, v]) => sample.labels?.[k] === v))
          sum += Number(sample.value ?? 0);
      }
      return sum;
    });
  }

  logTail(lines = 20): string {
    try {
      return readFileSync(this.logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** SIGTERM (graceful: finish reconciles, release the lease) and the exit it led to. */
  async stop(timeoutMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (!this.exited) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const result = await this.#exit;
    clearTimeout(timer);
    return result;
  }

  /** SIGKILL: a crash, the lease is not released. */
  async kill(): Promise<void> {
    if (!this.exited) this.child.kill('SIGKILL');
    await this.#exit;
  }
}
