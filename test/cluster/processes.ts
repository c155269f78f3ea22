// Starts control-plane components as child processes, each logging to its own file, and stops
// them by PID. A component that exits before it is ready fails the start with its name and log.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export class ComponentError extends Error {
  readonly component: string;
  readonly logPath: string;
  constructor(component: string, message: string, logPath: string) {
    super(`${component}: ${message}\n  log: ${logPath}\n${indentedTail(logPath)}`);
    this.name = 'ComponentError';
    this.component = component;
    this.logPath = logPath;
  }
}

function indentedTail(logPath: string, lines = 12): string {
  try {
    const text = readFileSync(logPath, 'utf8').trimEnd();
    const tail = text.split('\n').slice(-lines);
    const inUse = /address already in use/i.test(text) ? '  (a port it needs is already in use)\n' : '';
    return `${inUse}  last lines:\n${tail.map((l) => `    ${l}`).join('\n')}`;
  } catch {
    return '  (no log written)';
  }
}

export interface Component {
  name: string;
  pid: number;
  logPath: string;
  /** Set once the process has exited. */
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
}

/** Every child of this Node process that a ProcessGroup started, for the last-resort exit hook. */
const liveChildren = new Set<ChildProcess>();
process.once('exit', () => {
  // Synchronous: the event loop is gone. Only reached when stop() did not run (a crash).
  for (const child of liveChildren) child.kill('SIGKILL');
});

export class ProcessGroup {
  private readonly started: { component: Component; child: ChildProcess }[] = [];

  get components(): Component[] {
    return this.started.map((s) => s.component);
  }

  start(name: string, command: string, args: string[], logPath: string, env?: NodeJS.ProcessEnv): Component {
    const fd = openSync(logPath, 'a');
    let child: ChildProcess;
    try {
      child = spawn(command, args, { stdio: ['ignore', fd, fd], env: env ?? process.env });
    } finally {
      closeSync(fd);
    }
    if (child.pid === undefined) throw new ComponentError(name, `could not start ${command}`, logPath);
    const component: Component = { name, pid: child.pid, logPath, exit: undefined };
    liveChildren.add(child);
    child.on('error', () => {});
    child.once('exit', (code, signal) => {
      component.exit = { code, signal };
      liveChildren.delete(child);
    });
    this.started.push({ component, child });
    return component;
  }

  /**
   * Polls `check` until it resolves true; fails if the component exits first or the time runs
   * out. `check` errors count as "not yet".
   */
  async waitReady(component: Component, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastError = '';
    while (Date.now() < deadline) {
      if (component.exit) {
        const how = component.exit.signal ? `signal ${component.exit.signal}` : `code ${component.exit.code}`;
        throw new ComponentError(component.name, `exited with ${how} before it was ready`, component.logPath);
      }
      try {
        if (await check()) return;
      } catch (err) {
        // A check that knows the component failed says so with a ComponentError: no waiting.
        if (err instanceof ComponentError) throw err;
        lastError = (err as Error).message;
      }
      await sleep(200);
    }
    throw new ComponentError(
      component.name,
      `not ready after ${timeoutMs / 1000} s${lastError ? ` (last check: ${lastError})` : ''}`,
      component.logPath,
    );
  }

  /** Stops one component by its PID: SIGTERM, then SIGKILL after the grace period. */
  async stop(component: Component, graceMs = 10_000): Promise<void> {
    const entry = this.started.find((s) => s.component === component);
    if (!entry || component.exit) return;
    const exited = new Promise<void>((resolve) => entry.child.once('exit', () => resolve()));
    entry.child.kill('SIGTERM');
    const timer = setTimeout(() => entry.child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  /** Stops every component, newest first. */
  async stopAll(graceMs = 10_000): Promise<void> {
    for (const { component } of [...this.started].reverse()) await this.stop(component, graceMs);
  }
}

/** Ports handed out by this process (each once), so two callers never get the same. */
const handedOut = new Set<number>();

/** The first port of the kernel's ephemeral range (the source ports of outgoing connections). */
function ephemeralStart(): number {
  try {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0]);
    return Number.isInteger(first) && first > 21_000 ? first : 32_768;
  } catch {
    return 32_768;
  }
}

/** Whether 127.0.0.1:port can be listened on now. */
function canListen(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A free TCP port on 127.0.0.1 for a server started later, from 21000 up to the kernel's
 * ephemeral range or Services' NodePort range (30000-32767), whichever starts first. The
 * kernel's own choice (listen on port 0) comes from the ephemeral range, which outgoing
 * connections also draw their source ports from: between choosing a port and a component
 * binding it (seconds, while etcd and the apiserver start and clients poll them), a connection
 * could take it, and the component then failed with "address already in use". Below 21000 are
 * the real node's fixed ports (kubelet and kube-proxy on 20248-20256, node/node.ts).
 */
export async function freePort(): Promise<number> {
  const low = 21_000;
  const high = Math.min(30_000, ephemeralStart());
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low));
    if (handedOut.has(port) || !(await canListen(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free port on 127.0.0.1 in ${low}-${high - 1} after 100 attempts`);
}
