/**
 * Service instances started by the harness: one child process each, on its own loopback port,
 * output to a log file. Every instance ever started is kept in `liveInstances` until it exits,
 * so a test can stop leftovers by their own PID (`killLiveInstances`).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { request } from 'node:http';
import { constants } from 'node:os';
import { join } from 'node:path';

export interface InstanceCommand {
  /** A shell command line, run as `exec <command>` so that the signal reaches the service itself. */
  shell?: string;
  /** Or an argv, run without a shell. */
  argv?: string[];
  env?: Record<string, string>;
  cwd?: string;
}

export interface InstanceExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Exit status as a shell or Kubernetes reports it: the code, or 128 + signal number. */
  status: number;
}

const liveInstances = new Set<ServiceInstance>();

/** SIGKILL, by PID, every instance still running. For test teardown and harness bounds. */
export function killLiveInstances(): void {
  for (const instance of liveInstances) instance.kill();
}

export class ServiceInstance {
  readonly id: string;
  readonly port: number;
  readonly logPath: string;
  readonly child: ChildProcess;
  readonly exited: Promise<InstanceExit>;
  readonly startedAt: number;
  readyAt: number | undefined;
  terminatedAt: number | undefined;
  exitedAt: number | undefined;
  exit: InstanceExit | undefined;
  private readonly clock: () => number;

  constructor(options: {
    id: string;
    port: number;
    command: InstanceCommand;
    logDir: string;
    clock: () => number;
  }) {
    this.id = options.id;
    this.port = options.port;
    this.logPath = join(options.logDir, `${options.id}.log`);
    const log = openSync(this.logPath, 'a');
    const { command } = options;
    const env = { ...process.env, ...command.env, PORT: String(options.port), HOST: '127.0.0.1' };
    const stdio: ['ignore', number, number] = ['ignore', log, log];
    if (command.argv && command.argv.length > 0) {
      const [file, ...args] = command.argv as [string, ...string[]];
      this.child = spawn(file, args, { env, stdio, cwd: command.cwd });
    } else if (command.shell) {
      this.child = spawn('/bin/sh', ['-c', `exec ${command.shell}`], { env, stdio, cwd: command.cwd });
    } else {
      throw new Error('instance command needs shell or argv');
    }
    this.startedAt = options.clock();
    liveInstances.add(this);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exitedAt = options.clock();
        const signalNumber = signal ? (constants.signals[signal] ?? 0) : 0;
        this.exit = { code, signal, status: code ?? 128 + signalNumber };
        liveInstances.delete(this);
        resolve(this.exit);
      });
    });
    this.clock = options.clock;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  /** Polls GET `path` on the instance's own port until it answers 200. */
  async waitReady(path: string, timeoutMs: number): Promise<void> {
    const giveUpAt = this.clock() + timeoutMs;
    while (this.clock() < giveUpAt) {
      if (!this.running) throw new Error(`${this.id} exited before it was ready (see ${this.logPath})`);
      if ((await probe(this.port, path)) === 200) {
        this.readyAt = this.clock();
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`${this.id} not ready on ${path} within ${timeoutMs} ms (see ${this.logPath})`);
  }

  terminate(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (!this.running || this.child.pid === undefined) return;
    this.terminatedAt ??= this.clock();
    process.kill(this.child.pid, signal);
  }

  kill(): void {
    if (!this.running || this.child.pid === undefined) return;
    try {
      process.kill(this.child.pid, 'SIGKILL');
    } catch {
      // Already gone between the check and the kill.
    }
  }
}

function probe(port: number, path: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, timeout: 1000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}
