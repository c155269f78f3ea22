/**
 * The drain harness: N instances of any HTTP service behind an EndpointProxy, open-loop load
 * with a ledger, and a rolling restart (start new, wait ready, delete old: endpoint removal
 * starts, then preStop, then SIGTERM). Reports lost requests, latency during the rollout and
 * each instance's shutdown, and a verdict: a run passes only if the load was still sending when
 * the rollout ended. Loopback only; bounded in requests and in time.
 */
import { mkdtempSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { freePort } from '../cluster/processes.ts';
import { type InstanceCommand, type InstanceExit, ServiceInstance } from './instances.ts';
import {
  isLost,
  type KeepAliveMode,
  type LedgerEntry,
  type LoadEnd,
  loadStoppedEarly,
  OpenLoopLoad,
  percentile,
  sendLogged,
  summarizeLedger,
} from './load.ts';
import { EndpointProxy } from './proxy.ts';

export interface RolloutOptions {
  command: InstanceCommand;
  instances: number;
  /** Requests per second, open loop. */
  rate: number;
  /** Keep-alive sockets in the client pool. */
  maxSockets: number;
  /** Whether the client pool honours the server's `Keep-Alive: timeout=N` hint. */
  keepAliveMode: KeepAliveMode;
  /** Seconds the proxy keeps routing new connections to a deleted instance. */
  propagationSeconds: number;
  /** Seconds between deletion and SIGTERM, as a preStop sleep. */
  preStopSeconds: number;
  warmupSeconds: number;
  cooldownSeconds: number;
  path: string;
  readyPath: string;
  maxRequests: number;
  requestTimeoutMs: number;
  /** Whole-run bound: instances still running then are SIGKILLed and the report says so. */
  timeoutSeconds: number;
  /** Requests sent straight to each initial instance just before the rollout, e.g. longer than its deadline. */
  longRequest?: { path: string };
  logDir?: string;
}

export const defaultRolloutOptions = {
  instances: 2,
  rate: 100,
  maxSockets: 16,
  keepAliveMode: 'respect',
  propagationSeconds: 1,
  preStopSeconds: 0,
  warmupSeconds: 1,
  cooldownSeconds: 1,
  path: '/work',
  readyPath: '/readyz',
  maxRequests: 5000,
  requestTimeoutMs: 10_000,
  timeoutSeconds: 120,
} satisfies Partial<RolloutOptions>;

export interface LatencySummary {
  count: number;
  p50Ms?: number;
  p99Ms?: number;
  maxMs?: number;
}

export interface InstanceReport {
  id: string;
  role: 'initial' | 'replacement';
  pid?: number;
  port: number;
  logPath: string;
  /** Times in ms on the harness clock (0 = run start). */
  startedAt: number;
  readyAt?: number;
  terminatedAt?: number;
  exitedAt?: number;
  /** SIGTERM to exit. */
  shutdownMs?: number;
  exit?: InstanceExit;
  served: number;
  lost: number;
  /** End of the last request this instance answered. */
  lastRequestEndedAt?: number;
  /** Exit minus the end of its last request: how long it lingered with nothing left to do. */
  exitAfterLastRequestMs?: number;
}

export interface RolloutReport {
  options: RolloutOptions;
  durationMs: number;
  timedOut: boolean;
  sent: number;
  answeredOk: number;
  lost: number;
  lostByKind: Record<string, number>;
  /** How the load ended; undefined if it never started. */
  load?: LoadEnd;
  /** From the first replacement to the last old instance's exit. */
  rolloutWindow: { from: number; to: number };
  latency: { steady: LatencySummary; rollout: LatencySummary };
  instances: InstanceReport[];
  overhead: {
    /** Median latency the proxy adds to a readiness request over keep-alive. */
    proxyAddedP50Ms?: number;
    /** Harness CPU time over wall time, in % of one core. */
    harnessCpuPercent: number;
    /** 99th percentile of the harness's own event-loop lag: high values skew its latency figures. */
    harnessEventLoopDelayP99Ms: number;
  };
  ledger: LedgerEntry[];
}

const loopDelayResolutionMs = 10;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function latencyOf(entries: LedgerEntry[]): LatencySummary {
  const { answered, p50Ms, p99Ms, maxMs } = summarizeLedger(entries);
  return { count: answered, p50Ms, p99Ms, maxMs };
}

async function measureProxyOverhead(proxyPort: number, directPort: number, path: string): Promise<number> {
  const clock = () => performance.now();
  const sample = async (port: number): Promise<number> => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const durations: number[] = [];
    for (let i = 0; i < 50; i++) {
      const entry: LedgerEntry = { id: i, sentAt: clock() };
      await sendLogged(entry, { host: '127.0.0.1', port, path, agent, timeoutMs: 2000, clock });
      if (entry.endedAt !== undefined) durations.push(entry.endedAt - entry.sentAt);
    }
    agent.destroy();
    return percentile(durations, 0.5) ?? 0;
  };
  return (await sample(proxyPort)) - (await sample(directPort));
}

export async function runRollout(options: RolloutOptions): Promise<RolloutReport> {
  const t0 = performance.now();
  const clock = () => performance.now() - t0;
  const cpuAtStart = process.cpuUsage();
  const loopDelay = monitorEventLoopDelay({ resolution: loopDelayResolutionMs });
  loopDelay.enable();
  const logDir = options.logDir ?? mkdtempSync(join(tmpdir(), 'drain-test-'));
  const proxy = new EndpointProxy({ propagationDelayMs: options.propagationSeconds * 1000 });
  const instances: { instance: ServiceInstance; role: InstanceReport['role'] }[] = [];
  let timedOut = false;
  let serial = 0;

  const startInstance = async (role: InstanceReport['role']): Promise<ServiceInstance> => {
    serial += 1;
    const instance = new ServiceInstance({
      id: `${role === 'initial' ? 'old' : 'new'}-${serial}`,
      port: await freePort(),
      command: options.command,
      logDir,
      clock,
    });
    instances.push({ instance, role });
    await instance.waitReady(options.readyPath, 20_000);
    proxy.addBackend(instance.id, instance.port);
    return instance;
  };

  const bound = setTimeout(() => {
    timedOut = true;
    for (const { instance } of instances) instance.kill();
  }, options.timeoutSeconds * 1000);

  let load: OpenLoopLoad | undefined;
  const longRequests: Promise<void>[] = [];
  const longLedger: LedgerEntry[] = [];
  let proxyAddedP50Ms: number | undefined;
  let rolloutWindow = { from: 0, to: 0 };
  try {
    const proxyPort = await proxy.listen();
    const initial: ServiceInstance[] = [];
    for (let i = 0; i < options.instances; i++) initial.push(await startInstance('initial'));
    const [first] = initial;
    if (first) proxyAddedP50Ms = await measureProxyOverhead(proxyPort, first.port, options.readyPath);

    load = new OpenLoopLoad({
      host: '127.0.0.1',
      port: proxyPort,
      path: options.path,
      ratePerSecond: options.rate,
      maxSockets: options.maxSockets,
      keepAliveMode: options.keepAliveMode,
      maxRequests: options.maxRequests,
      maxDurationMs: options.timeoutSeconds * 1000,
      timeoutMs: options.requestTimeoutMs,
      clock,
      // Which instance a connection reached, asked of the proxy when the connection is made.
      identifyConnection: ({ localPort, since }) => proxy.backendOfConnection(localPort, since),
    });
    load.start();
    await sleep(options.warmupSeconds * 1000);

    if (options.longRequest) {
      for (const instance of initial) {
        const entry: LedgerEntry = { id: -1, sentAt: clock(), direct: true, backend: instance.id };
        longLedger.push(entry);
        const { path } = options.longRequest;
        longRequests.push(
          sendLogged(entry, {
            host: '127.0.0.1',
            port: instance.port,
            path,
            agent: false,
            timeoutMs: options.timeoutSeconds * 1000,
            clock,
          }),
        );
      }
      await sleep(100); // let them arrive before SIGTERM
    }

    rolloutWindow = { from: clock(), to: 0 };
    for (const old of initial) {
      if (timedOut) break;
      await startInstance('replacement');
      // Deleting a pod starts endpoint removal and preStop at the same time.
      proxy.terminate(old.id);
      await sleep(options.preStopSeconds * 1000);
      old.terminate('SIGTERM');
    }
    await Promise.all(initial.map((i) => i.exited));
    rolloutWindow.to = clock();
    await sleep(options.cooldownSeconds * 1000);
  } finally {
    await load?.stop();
    await Promise.all(longRequests);
    for (const { instance } of instances) instance.terminate('SIGTERM');
    const stopBound = setTimeout(() => {
      for (const { instance } of instances) instance.kill();
    }, 10_000);
    await Promise.all(instances.map(({ instance }) => instance.exited));
    clearTimeout(stopBound);
    clearTimeout(bound);
    await proxy.close();
    loopDelay.disable();
  }

  const ledger = [...(load?.ledger ?? []), ...longLedger];
  const summary = summarizeLedger(ledger);
  const durationMs = clock();
  const cpu = process.cpuUsage(cpuAtStart);

  const instanceReports = instances.map(({ instance, role }): InstanceReport => {
    const mine = ledger.filter((e) => e.backend === instance.id);
    const ends = mine
      .filter((e) => !isLost(e))
      .map((e) => e.endedAt)
      .filter((t): t is number => t !== undefined);
    const lastRequestEndedAt = ends.length ? Math.max(...ends) : undefined;
    return {
      id: instance.id,
      role,
      pid: instance.pid,
      port: instance.port,
      logPath: instance.logPath,
      startedAt: instance.startedAt,
      readyAt: instance.readyAt,
      terminatedAt: instance.terminatedAt,
      exitedAt: instance.exitedAt,
      shutdownMs:
        instance.exitedAt !== undefined && instance.terminatedAt !== undefined
          ? instance.exitedAt - instance.terminatedAt
          : undefined,
      exit: instance.exit,
      served: summary.byInstance[instance.id]?.answered ?? 0,
      lost: summary.byInstance[instance.id]?.lost ?? 0,
      lastRequestEndedAt,
      exitAfterLastRequestMs:
        instance.exitedAt !== undefined && lastRequestEndedAt !== undefined
          ? instance.exitedAt - lastRequestEndedAt
          : undefined,
    };
  });

  const loadEntries = ledger.filter((e) => !e.direct);
  return {
    options,
    durationMs,
    timedOut,
    sent: summary.sent,
    answeredOk: summary.answered,
    lost: summary.lost,
    lostByKind: summary.lostByKind,
    load: load?.end,
    rolloutWindow,
    latency: {
      steady: latencyOf(loadEntries.filter((e) => e.sentAt < rolloutWindow.from)),
      rollout: latencyOf(
        loadEntries.filter((e) => e.sentAt >= rolloutWindow.from && e.sentAt <= rolloutWindow.to),
      ),
    },
    instances: instanceReports,
    overhead: {
      proxyAddedP50Ms,
      harnessCpuPercent: ((cpu.user + cpu.system) / 1000 / durationMs) * 100,
      // The histogram records whole sampling intervals: the lag is what exceeds the resolution.
      harnessEventLoopDelayP99Ms: Math.max(0, loopDelay.percentile(99) / 1e6 - loopDelayResolutionMs),
    },
    ledger,
  };
}

/**
 * Pass or fail, with every reason: a lost request, a replaced instance that did not exit 0, a run
 * that hit its time bound, or a load that stopped sending before the rollout ended (its "0 lost"
 * would not cover the end of the rollout).
 */
export function verdict(report: RolloutReport): { pass: boolean; reasons: string[] } {
  const reasons: string[] = [];
  if (report.lost > 0) {
    const kinds = Object.entries(report.lostByKind).map(([kind, n]) => `${kind}: ${n}`);
    reasons.push(`${report.lost} of ${report.sent} requests lost (${kinds.join(', ')})`);
  }
  if (report.timedOut)
    reasons.push(`run hit its ${report.options.timeoutSeconds} s bound: instances were killed`);
  if (!report.load) reasons.push('the load never started');
  else {
    const early = loadStoppedEarly(report.load, { what: 'the rollout ended', at: report.rolloutWindow.to });
    if (early) reasons.push(early);
  }
  for (const instance of report.instances.filter((i) => i.role === 'initial')) {
    if (instance.exit?.status !== 0) {
      const signal = instance.exit?.signal ? ` (${instance.exit.signal})` : '';
      reasons.push(`${instance.id} exited ${instance.exit?.status ?? '-'}${signal}, not 0`);
    }
  }
  return { pass: reasons.length === 0, reasons };
}

const fmt = (ms: number | undefined): string => (ms === undefined ? '-' : `${Math.round(ms)} ms`);

/** Human-readable report. */
export function formatReport(report: RolloutReport): string {
  const { options: o } = report;
  const result = verdict(report);
  const lines = [
    `load: ${o.rate} req/s open loop, ${o.maxSockets} keep-alive sockets (${o.keepAliveMode} Keep-Alive hint), ${o.path}; ` +
      `${o.instances} instances, propagation ${o.propagationSeconds} s, preStop ${o.preStopSeconds} s`,
    `requests: ${report.sent} sent, ${report.answeredOk} answered 2xx, ${report.lost} lost` +
      (report.lost
        ? ` (${Object.entries(report.lostByKind)
            .map(([k, n]) => `${k}: ${n}`)
            .join(', ')})`
        : ''),
    `latency steady:  p50 ${fmt(report.latency.steady.p50Ms)}, p99 ${fmt(report.latency.steady.p99Ms)}, max ${fmt(report.latency.steady.maxMs)} (${report.latency.steady.count} requests)`,
    `latency rollout: p50 ${fmt(report.latency.rollout.p50Ms)}, p99 ${fmt(report.latency.rollout.p99Ms)}, max ${fmt(report.latency.rollout.maxMs)} (${report.latency.rollout.count} requests)`,
    'instances:',
    ...report.instances.map(
      (i) =>
        `  ${i.id.padEnd(6)} pid ${String(i.pid).padEnd(7)} served ${String(i.served).padStart(5)} lost ${String(i.lost).padStart(4)}` +
        (i.terminatedAt !== undefined && i.role === 'initial'
          ? `  shutdown ${fmt(i.shutdownMs)} (exit after last request ${fmt(i.exitAfterLastRequestMs)}) exit ${i.exit?.status ?? '-'}${i.exit?.signal ? ` (${i.exit.signal})` : ''}`
          : `  exit ${i.exit?.status ?? '-'} (stopped after the run)`),
    ),
    `harness overhead: proxy adds p50 ${report.overhead.proxyAddedP50Ms?.toFixed(2) ?? '-'} ms; ` +
      `harness CPU ${report.overhead.harnessCpuPercent.toFixed(1)} % of a core; event-loop lag p99 ${report.overhead.harnessEventLoopDelayP99Ms.toFixed(1)} ms`,
    `duration ${(report.durationMs / 1000).toFixed(1)} s${report.timedOut ? ' (TIMED OUT: instances were killed)' : ''}`,
    result.pass ? 'PASS' : `FAIL:\n${result.reasons.map((r) => `  - ${r}`).join('\n')}`,
  ];
  return lines.join('\n');
}
