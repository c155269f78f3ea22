/**
 * Side-by-side drain benchmark (not a test): demo-service, a naive server, servers built on
 * @godaddy/terminus, http-terminator and lightship, and bare node:http, through the same harness
 * and load. Writes docs/benchmarks.md (or --out FILE, or --out - for stdout only).
 *
 *   npm run bench:drain [-- --repeat 3 --rate 200 --out -]
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { arch, cpus, loadavg, platform, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort } from '../cluster/processes.ts';

/** The instances' logs, for the duration of the run. */
const logDir = mkdtempSync(join(tmpdir(), 'drain-bench-'));
process.once('exit', () => rmSync(logDir, { recursive: true, force: true }));

import { killLiveInstances, ServiceInstance } from './instances.ts';
import { closedLoopThroughput, isLost, type LedgerEntry, percentile } from './load.ts';
import { defaultRolloutOptions, type InstanceReport, type RolloutOptions, runRollout } from './rollout.ts';

interface Contender {
  name: string;
  script: string;
  /** Seconds the server waits after SIGTERM before it stops accepting (its own setting). */
  delaySeconds: number;
  setup: string;
}

const propagationSeconds = 1;
const serverDelaySeconds = 1.5;
const latencyProfile = 'lognormal:p50=10,p99=100';

const contenders: Contender[] = [
  {
    name: 'demo-service',
    script: 'demo-service/src/main.ts',
    delaySeconds: serverDelaySeconds,
    setup: 'PROPAGATION_DELAY_SECONDS, Connection: close from SIGTERM, idle sockets left to the client',
  },
  {
    name: 'naive',
    script: 'test/drain/servers/naive.ts',
    delaySeconds: 0,
    setup: '`process.exit(0)` on SIGTERM',
  },
  {
    name: '@godaddy/terminus',
    script: 'test/drain/servers/terminus.ts',
    delaySeconds: serverDelaySeconds,
    setup: 'beforeShutdown sleep, timeout 20 s, useExit0',
  },
  {
    name: 'http-terminator',
    script: 'test/drain/servers/http-terminator.ts',
    delaySeconds: serverDelaySeconds,
    setup: 'sleep then terminate(), gracefulTerminationTimeout 20 s',
  },
  {
    name: 'lightship',
    script: 'test/drain/servers/lightship.ts',
    delaySeconds: serverDelaySeconds,
    setup: 'shutdownDelay, shutdown handler `server.close()`',
  },
  {
    name: 'bare node:http',
    script: 'test/drain/servers/bare.ts',
    delaySeconds: 0,
    setup: 'no signal handler (killed by SIGTERM)',
  },
];

interface Row {
  contender: Contender;
  sent: number;
  lost: number;
  lostByKind: Record<string, number>;
  rolloutP99Ms?: number;
  /** Per replaced instance: shutdown time beyond max(own delay, its last request's end after SIGTERM). */
  beyondNeedMs: number[];
  exitStatuses: number[];
  throughput: number;
  cpuUsPerRequest: number[];
}

function beyondNeed(instance: InstanceReport, delaySeconds: number): number | undefined {
  if (instance.shutdownMs === undefined || instance.terminatedAt === undefined) return undefined;
  const lastRequestAfterTerm =
    instance.lastRequestEndedAt === undefined ? 0 : instance.lastRequestEndedAt - instance.terminatedAt;
  return instance.shutdownMs - Math.max(delaySeconds * 1000, lastRequestAfterTerm);
}

/** CPU time (user + system) a process has used, in ms, from /proc; undefined where there is none. */
function processCpuMs(pid: number | undefined): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which may contain spaces: utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicksPerSecond;
  } catch {
    return undefined;
  }
}
/** USER_HZ: 100 on Linux on every common architecture. */
const clockTicksPerSecond = 100;

async function throughputOf(
  contender: Contender,
  durationMs: number,
): Promise<{ perSecond: number; cpuUsPerRequest?: number }> {
  const instance = new ServiceInstance({
    id: 'throughput',
    port: await freePort(),
    command: {
      argv: [process.execPath, contender.script],
      env: { LATENCY_PROFILE: 'fixed:0', LOG_LEVEL: 'warn' },
    },
    logDir,
    clock: () => performance.now(),
  });
  try {
    await instance.waitReady('/readyz', 20_000);
    const target = { host: '127.0.0.1', port: instance.port, path: '/work?ms=0', concurrency: 32 };
    await closedLoopThroughput({ ...target, durationMs: 500 }); // JIT warm-up
    const cpuBefore = processCpuMs(instance.pid);
    const { perSecond, failed, requests } = await closedLoopThroughput({ ...target, durationMs });
    const cpuAfter = processCpuMs(instance.pid);
    if (failed > 0) console.error(`${contender.name}: ${failed} failed requests in the throughput run`);
    const cpuUsPerRequest =
      cpuBefore === undefined || cpuAfter === undefined
        ? undefined
        : ((cpuAfter - cpuBefore) * 1000) / requests;
    return { perSecond, cpuUsPerRequest };
  } finally {
    instance.kill();
    await instance.exited;
  }
}

const ms = (value: number | undefined): string => (value === undefined ? '-' : `${Math.round(value)} ms`);

interface Overhead {
  proxyAddedP50Ms: number[];
  harnessCpuPercent: number[];
  loopLagP99Ms: number[];
}

function render(
  rows: Row[],
  overhead: Overhead,
  settings: { repeat: number; rate: number; sockets: number; seconds: number },
): string {
  const median = (values: number[], digits: number) =>
    (percentile(values, 0.5) ?? Number.NaN).toFixed(digits);
  const max = (values: number[], digits: number) => Math.max(...values).toFixed(digits);
  const cpuCell = (values: number[]) => {
    const median = percentile(values, 0.5);
    return median === undefined ? '-' : `${median.toFixed(0)} µs`;
  };
  const bare = rows.find((r) => r.contender.name === 'bare node:http')?.throughput ?? Number.NaN;
  const cpu = cpus();
  const table = [
    '| server | lost / sent | lost by kind | p99 during rollout | shutdown beyond need (median / max) | exit codes | throughput vs bare | server CPU per request |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map((r) => {
      const kinds = Object.entries(r.lostByKind)
        .map(([k, n]) => `${k}: ${n}`)
        .join(', ');
      const statuses = [...new Set(r.exitStatuses)].sort((a, b) => a - b).join(', ');
      return `| ${r.contender.name} | ${r.lost} / ${r.sent} | ${kinds || '-'} | ${ms(r.rolloutP99Ms)} | ${ms(percentile(r.beyondNeedMs, 0.5))} / ${ms(Math.max(...r.beyondNeedMs))} | ${statuses} | ${((r.throughput / bare) * 100).toFixed(0)} % (${Math.round(r.throughput)}/s) | ${cpuCell(r.cpuUsPerRequest)} |`;
    }),
  ];
  return `# Drain benchmark

Generated by \`npm run bench:drain\` (test/drain/bench.ts). A benchmark, not a test: figures
move with machine load; losses and exit codes are what to read first.

- Date: ${new Date().toISOString()}
- Machine: ${cpu.length} × ${cpu[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, ${platform()} ${release()} ${arch()}, load average at start ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' / ')} (shared with other builds)
- Node ${process.versions.node}

## Setup

Each server ran ${settings.repeat} rolling restarts of 2 instances in the drain harness
(\`npm run drain-test\`): open-loop load at ${settings.rate} req/s over a pool of ${settings.sockets}
keep-alive sockets (Node's agent, LIFO, honouring \`Keep-Alive: timeout\`), \`GET /work\` with latency
\`${latencyProfile}\` (ms), a proxy that keeps routing new connections to a deleted instance for
${propagationSeconds} s and never cuts established ones, no preStop. Every server with a shutdown
setting was given the same ${serverDelaySeconds} s propagation wait (terminus \`beforeShutdown\`,
lightship \`shutdownDelay\`, a sleep before http-terminator's \`terminate()\`, demo-service
\`PROPAGATION_DELAY_SECONDS\`) and 20 s for in-flight work. Throughput: one instance,
\`GET /work?ms=0\`, 32 keep-alive connections, closed loop, ${settings.seconds} s, same process as
the load generator (so CPU-bound on this machine), best of ${settings.repeat}.

| server | shutdown setup |
| --- | --- |
${contenders.map((c) => `| ${c.name} | ${c.setup} |`).join('\n')}

## Results

${table.join('\n')}

Harness overhead over the ${overhead.harnessCpuPercent.length} rollouts (median / max): the proxy adds
${median(overhead.proxyAddedP50Ms, 2)} / ${max(overhead.proxyAddedP50Ms, 2)} ms to a request's p50 (keep-alive, measured
before each run); the harness process (proxy, load generator, ledger) used
${median(overhead.harnessCpuPercent, 1)} / ${max(overhead.harnessCpuPercent, 1)} % of one core; its event-loop lag p99 was
${median(overhead.loopLagP99Ms, 1)} / ${max(overhead.loopLagP99Ms, 1)} ms, an upper bound on what it adds to the latency figures.

- **lost**: requests that got no 2xx answer (reset, hang-up, refused, timeout or non-2xx), no retries.
- **p99 during rollout**: answered requests sent between the first SIGTERM and the last old instance's exit.
- **shutdown beyond need**: SIGTERM-to-exit minus the larger of the server's own propagation wait
  and the time its last answered request ended after SIGTERM: how long it lingered with nothing left
  to do. Negative means it exited before its work was done (see lost).
- **exit codes**: of the replaced instances; 143 = killed by SIGTERM (no handler), 1 = lightship's
  "did not exit on its own" fallback, 124 = demo-service forced at its deadline.

## Reading it

- Keep-alive is where drains lose requests. A server that closes an idle pooled socket while the
  client is reusing it produces \`ECONNRESET\` / \`socket hang up\` on a *reused socket*; it is a race,
  so a mechanism that allows it loses a few requests in some runs and none in others.
- demo-service answers with \`Connection: close\` from SIGTERM on, so active connections retire
  after their next response, and leaves idle sockets to the client, which drops them first on the
  advertised keep-alive timeout: nothing to race.
- @godaddy/terminus (through stoppable) and lightship (through \`server.close()\` in its shutdown
  handler) close idle sockets at once when the delay ends; http-terminator destroys them in
  \`terminate()\`. lightship then calls \`process.exit(1)\` one second after its handlers if the event
  loop is still busy, as it is while a keep-alive connection stays open: exit code 1 in some runs,
  and whatever is still open is cut.
- naive and bare cut in-flight requests, and the proxy's connections to them are refused during
  the propagation lag.
- Throughput: the load generator runs on the same 2 cores, so the requests per second are
  client-bound and differences of a few % are noise; server CPU per request (from /proc) is the
  better measure of what each server costs while serving. demo-service's extra microseconds are
  its Prometheus histogram and in-flight gauge plus the drain's connection bookkeeping.
`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      repeat: { type: 'string', default: '3' },
      rate: { type: 'string', default: '200' },
      sockets: { type: 'string', default: '32' },
      'throughput-seconds': { type: 'string', default: '3' },
      out: { type: 'string', default: 'docs/benchmarks.md' },
      only: { type: 'string' },
    },
  });
  const settings = {
    repeat: Math.max(1, Number(values.repeat)),
    rate: Number(values.rate),
    sockets: Number(values.sockets),
    seconds: Number(values['throughput-seconds']),
  };
  process.once('SIGINT', () => {
    killLiveInstances();
    process.exit(130);
  });
  const selected = values.only
    ? contenders.filter((c) => c.name.includes(values.only as string))
    : contenders;
  const rows: Row[] = [];
  const overhead: Overhead = { proxyAddedP50Ms: [], harnessCpuPercent: [], loopLagP99Ms: [] };
  for (const contender of selected) {
    const row: Row = {
      contender,
      sent: 0,
      lost: 0,
      lostByKind: {},
      beyondNeedMs: [],
      exitStatuses: [],
      throughput: 0,
      cpuUsPerRequest: [],
    };
    const rolloutLatencies: number[] = [];
    for (let round = 0; round < settings.repeat; round++) {
      const options: RolloutOptions = {
        ...defaultRolloutOptions,
        command: {
          argv: [process.execPath, contender.script],
          env: {
            LATENCY_PROFILE: latencyProfile,
            PROPAGATION_DELAY_SECONDS: String(contender.delaySeconds),
            DRAIN_TIMEOUT_SECONDS: '20',
            LOG_LEVEL: 'warn',
          },
        },
        rate: settings.rate,
        maxSockets: settings.sockets,
        propagationSeconds,
        warmupSeconds: 1,
        cooldownSeconds: 1,
        timeoutSeconds: 90,
        maxRequests: 20_000,
        logDir,
      };
      const report = await runRollout(options);
      row.sent += report.sent;
      row.lost += report.lost;
      for (const [kind, n] of Object.entries(report.lostByKind))
        row.lostByKind[kind] = (row.lostByKind[kind] ?? 0) + n;
      const inWindow = (e: LedgerEntry) =>
        !e.direct &&
        !isLost(e) &&
        e.sentAt >= report.rolloutWindow.from &&
        e.sentAt <= report.rolloutWindow.to;
      rolloutLatencies.push(...report.ledger.filter(inWindow).map((e) => (e.endedAt ?? e.sentAt) - e.sentAt));
      for (const instance of report.instances.filter((i) => i.role === 'initial')) {
        const beyond = beyondNeed(instance, contender.delaySeconds);
        if (beyond !== undefined) row.beyondNeedMs.push(beyond);
        if (instance.exit) row.exitStatuses.push(instance.exit.status);
      }
      overhead.proxyAddedP50Ms.push(report.overhead.proxyAddedP50Ms ?? Number.NaN);
      overhead.harnessCpuPercent.push(report.overhead.harnessCpuPercent);
      overhead.loopLagP99Ms.push(report.overhead.harnessEventLoopDelayP99Ms);
      console.error(
        `${contender.name} round ${round + 1}: ${report.lost}/${report.sent} lost, overhead: proxy adds ${report.overhead.proxyAddedP50Ms?.toFixed(2)} ms p50, harness CPU ${report.overhead.harnessCpuPercent.toFixed(1)} %, loop lag p99 ${report.overhead.harnessEventLoopDelayP99Ms.toFixed(1)} ms`,
      );
      const throughput = await throughputOf(contender, settings.seconds * 1000);
      row.throughput = Math.max(row.throughput, throughput.perSecond);
      if (throughput.cpuUsPerRequest !== undefined) row.cpuUsPerRequest.push(throughput.cpuUsPerRequest);
    }
    row.rolloutP99Ms = percentile(rolloutLatencies, 0.99);
    rows.push(row);
  }
  const markdown = render(rows, overhead, settings);
  console.log(markdown);
  if (values.out !== '-') writeFileSync(values.out, markdown);
}

await main();
