/**
 * The drain harness against real processes: demo-service loses nothing in a rolling restart
 * under keep-alive load, a server that exits on SIGTERM does lose requests (so the harness sees
 * losses), and a request longer than the deadline is cut, counted as forced and exits 124.
 * Loopback only, a few hundred requests, every process killed by PID afterwards.
 */
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, test } from 'vitest';
import { FORCED_EXIT_CODE } from '../../demo-service/src/drain.ts';
import { killLiveInstances } from './instances.ts';
import { isLost } from './load.ts';
import { defaultRolloutOptions, type RolloutOptions, runRollout } from './rollout.ts';

const node = process.execPath;
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
  }, 60_000);

  test('a server that exits on SIGTERM loses requests, and the harness reports them', async () => {
    const report = await runRollout(options(['test/drain/servers/naive.ts'], {}));
    expect(report.timedOut).toBe(false);
    expect(report.lost).toBeGreaterThan(0);
    const lostByInstance = report.instances.filter((i) => i.role === 'initial').map((i) => i.lost);
    expect(lostByInstance.some((n) => n > 0)).toBe(true);
    expect(Object.keys(report.lostByKind).length).toBeGreaterThan(0);
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
