/**
 * The drain harness against real processes: demo-service loses nothing in a rolling restart
 * under keep-alive load, a server that exits on SIGTERM does lose requests (so the harness sees
 * losses), a request longer than the deadline is cut, counted as forced and exits 124, and a
 * load that runs out before the rollout ends fails the run. Loopback only, a few hundred
 * requests, every process killed by PID afterwards.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, test } from 'vitest';
import { FORCED_EXIT_CODE } from '../../demo-service/src/drain.ts';
import { killLiveInstances } from './instances.ts';
import { isLost } from './load.ts';
import {
  defaultRolloutOptions,
  type InstanceReport,
  type RolloutOptions,
  type RolloutReport,
  runRollout,
  verdict,
} from './rollout.ts';

const node = process.execPath;
// The instances' logs, read by some tests; removed with the file's tests.
const logDir = mkdtempSync(join(tmpdir(), 'drain-test-'));
afterAll(() => rmSync(logDir, { recursive: true, force: true }));
// Mean 50 ms at 100 req/s: about 5 requests in flight, so an abrupt exit always cuts some.
const latencyProfile = 'uniform:20-80';

function options(argv: string[], env: Record<string, string>, extra: Partial<RolloutOptions> = {}) {
  return {
    ...defaultRolloutOptions,
    command: { argv: [node, ...argv], env: { LATENCY_PROFILE: latencyProfile, ...env } },
    rate: 100,
    maxSockets: 16,
    propagationSeconds: 1,
    maxRequests: 2000,
    timeoutSeconds: 45,
    logDir,
    ...extra,
  } satisfies RolloutOptions;
}

afterEach(() => killLiveInstances());

describe('drain harness', () => {
  test('demo-service loses no request in a rolling restart with keep-alive clients', async () => {
    const report = await runRollout(
      options(['demo-service/src/main.ts'], { PROPAGATION_DELAY_SECONDS: '1.5', LOG_LEVEL: 'warn' }),
    );
    expect(report.timedOut).toBe(false);
    expect(report.sent).toBeGreaterThan(200);
    expect(report.lostByKind).toEqual({});
    expect(report.lost).toBe(0);
    const replaced = report.instances.filter((i) => i.role === 'initial');
    expect(replaced).toHaveLength(2);
    for (const instance of replaced) {
      expect(instance.exit?.status).toBe(0);
      expect(instance.served).toBeGreaterThan(0);
    }
    // Every request was charged, when its connection was made, to an instance of this run.
    const ids = new Set(report.instances.map((i) => i.id));
    expect(report.ledger.filter((e) => !ids.has(e.backend ?? ''))).toEqual([]);
    expect(report.instances.reduce((sum, i) => sum + i.served, 0)).toBe(report.answeredOk);
    expect(report.load).toMatchObject({ stoppedBy: 'stop' });
    expect(verdict(report)).toEqual({ pass: true, reasons: [] });
  }, 60_000);

  test('a server that exits on SIGTERM loses requests, and the harness reports them', async () => {
    const report = await runRollout(options(['test/drain/servers/naive.ts'], {}));
    expect(report.timedOut).toBe(false);
    expect(report.lost).toBeGreaterThan(0);
    const lostByInstance = report.instances.filter((i) => i.role === 'initial').map((i) => i.lost);
    expect(lostByInstance.some((n) => n > 0)).toBe(true);
    expect(Object.keys(report.lostByKind).length).toBeGreaterThan(0);
    const { pass, reasons } = verdict(report);
    expect(pass).toBe(false);
    expect(reasons[0]).toMatch(new RegExp(`^${report.lost} of ${report.sent} requests lost \\(`));
  }, 60_000);

  test('a load that ran out of requests before the rollout ended fails the run, though nothing was lost', async () => {
    const report = await runRollout(
      options(
        ['demo-service/src/main.ts'],
        { PROPAGATION_DELAY_SECONDS: '0.5', LOG_LEVEL: 'warn' },
        {
          instances: 1,
          // 20 requests at 100/s: sent within 0.2 s, long before the old instance has exited.
          maxRequests: 20,
          warmupSeconds: 0.5,
          cooldownSeconds: 0,
        },
      ),
    );
    expect(report.timedOut).toBe(false);
    expect(report.lost).toBe(0);
    expect(report.load).toMatchObject({ stoppedBy: 'maxRequests', sent: 20 });
    expect(report.load?.stoppedAt).toBeLessThan(report.rolloutWindow.to);
    expect(verdict(report)).toEqual({
      pass: false,
      reasons: [
        expect.stringMatching(
          /^load stopped by its request bound \(20 sent\) at .*, before the rollout ended at /,
        ),
      ],
    });
  }, 60_000);

  test('a request longer than the deadline is cut, counted as forced, and the exit code says so', async () => {
    const report = await runRollout(
      options(
        ['demo-service/src/main.ts'],
        {
          PROPAGATION_DELAY_SECONDS: '1.5',
          // Deadline = 4 - 1 = 3 s after SIGTERM, well short of the 20 s request.
          TERMINATION_GRACE_PERIOD_SECONDS: '4',
          DRAIN_MARGIN_SECONDS: '1',
        },
        { longRequest: { path: '/work?ms=20000' } },
      ),
    );
    expect(report.timedOut).toBe(false);
    const long = report.ledger.filter((e) => e.direct);
    expect(long).toHaveLength(2);
    for (const entry of long) expect(isLost(entry)).toBe(true);
    // Only the long requests were cut: the regular load moved to the new instances untouched.
    expect(report.ledger.filter((e) => !e.direct && isLost(e))).toEqual([]);
    for (const instance of report.instances.filter((i) => i.role === 'initial')) {
      expect(instance.exit?.status).toBe(FORCED_EXIT_CODE);
      const drainEnd = readFileSync(instance.logPath, 'utf8')
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as { msg: string; outcome?: string; forcedCloses?: number })
        .find((line) => line.msg === 'drain forced at deadline');
      expect(drainEnd).toMatchObject({ outcome: 'forced', forcedCloses: 1 });
    }
  }, 60_000);
});

describe('verdict', () => {
  const instance = (id: string, status: number, signal: NodeJS.Signals | null = null): InstanceReport => ({
    id,
    role: 'initial',
    port: 1,
    logPath: `/tmp/${id}.log`,
    startedAt: 0,
    exit: { code: signal ? null : status, signal, status },
    served: 10,
    lost: 0,
  });
  const report = (fields: Partial<RolloutReport>): RolloutReport => ({
    options: { ...defaultRolloutOptions, command: { shell: 'true' } },
    durationMs: 6000,
    timedOut: false,
    sent: 500,
    answeredOk: 500,
    lost: 0,
    lostByKind: {},
    load: { stoppedBy: 'stop', stoppedAt: 6000, sent: 500 },
    rolloutWindow: { from: 1000, to: 5000 },
    latency: { steady: { count: 0 }, rollout: { count: 0 } },
    instances: [instance('old-1', 0)],
    overhead: { harnessCpuPercent: 1, harnessEventLoopDelayP99Ms: 0 },
    ledger: [],
    ...fields,
  });

  test('passes with nothing lost, clean exits, and the load still sending when the rollout ended', () => {
    expect(verdict(report({}))).toEqual({ pass: true, reasons: [] });
  });

  test('names every reason to fail', () => {
    const result = verdict(
      report({
        lost: 2,
        answeredOk: 498,
        lostByKind: { ECONNRESET: 2 },
        timedOut: true,
        load: { stoppedBy: 'maxDuration', stoppedAt: 4000, sent: 400 },
        instances: [instance('old-1', 143, 'SIGTERM'), instance('old-2', 0)],
      }),
    );
    expect(result).toEqual({
      pass: false,
      reasons: [
        '2 of 500 requests lost (ECONNRESET: 2)',
        `run hit its ${defaultRolloutOptions.timeoutSeconds} s bound: instances were killed`,
        expect.stringMatching(
          /^load stopped by its time bound at 4\.0 s, before the rollout ended at 5\.0 s: /,
        ),
        'old-1 exited 143 (SIGTERM), not 0',
      ],
    });
  });
});
