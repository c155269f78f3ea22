import type { V1LifecycleHandler } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import { MAX_HOOK_SECONDS, preStopSummary } from './podspec.ts';

describe('preStopSummary reads a bounded wait from any hook', () => {
  test.each<[string, unknown, ReturnType<typeof preStopSummary>]>([
    ['native sleep', { sleep: { seconds: 5 } }, { action: 'Sleep', seconds: 5 }],
    ['exec sleep', { exec: { command: ['sleep', '30'] } }, { action: 'Exec', seconds: 30 }],
    [
      'sh -c exec sleep',
      { exec: { command: ['/bin/sh', '-c', 'exec sleep 7'] } },
      { action: 'Exec', seconds: 7 },
    ],
    // Past a day: counted as a day (the grace period written must stay an int64).
    [
      'exec sleep 1e20',
      { exec: { command: ['sleep', '99999999999999999999'] } },
      { action: 'Exec', seconds: MAX_HOOK_SECONDS },
    ],
    ['native sleep 1e300', { sleep: { seconds: 1e300 } }, { action: 'Sleep', seconds: MAX_HOOK_SECONDS }],
    // What an AdmissionReview from anyone may carry: no number, no wait read.
    ['sleep.seconds a string', { sleep: { seconds: '5' } }, undefined],
    ['sleep.seconds negative', { sleep: { seconds: -1 } }, undefined],
    ['sleep.seconds NaN-like object', { sleep: { seconds: { $gt: 1 } } }, undefined],
    ['command not a list', { exec: { command: 'sleep 5' } }, undefined],
    ['command items not strings', { exec: { command: [{}, 5] } }, undefined],
    ['an httpGet hook', { httpGet: { path: '/quit', port: 8080 } }, undefined],
    // The forms found in public manifests: sleep before a command, units, fractions, any shell.
    [
      'sleep then quit',
      { exec: { command: ['sh', '-c', 'sleep 40; nginx -s quit'] } },
      { action: 'Exec', seconds: 40 },
    ],
    [
      'sleep && command',
      { exec: { command: ['/bin/sh', '-c', 'sleep 30 && kill -TERM 1'] } },
      { action: 'Exec', seconds: 30 },
    ],
    [
      'two sleeps',
      { exec: { command: ['bash', '-c', 'sleep 5\nsleep 10'] } },
      { action: 'Exec', seconds: 15 },
    ],
    ['sleep 30s', { exec: { command: ['sleep', '30s'] } }, { action: 'Exec', seconds: 30 }],
    ['sleep 1m', { exec: { command: ['/usr/bin/sleep', '1m'] } }, { action: 'Exec', seconds: 60 }],
    ['sleep 30.5, rounded up', { exec: { command: ['sleep', '30.5'] } }, { action: 'Exec', seconds: 31 }],
    [
      '/usr/bin/sh -c',
      { exec: { command: ['/usr/bin/sh', '-c', 'sleep 20'] } },
      { action: 'Exec', seconds: 20 },
    ],
    [
      "busybox's shell, -ec",
      { exec: { command: ['/busybox/sh', '-ec', 'sleep 12'] } },
      { action: 'Exec', seconds: 12 },
    ],
    // Negative controls: what comes first cannot be timed; not a sleep; not a number.
    ['a command before the sleep', { exec: { command: ['sh', '-c', 'nginx -s quit; sleep 40'] } }, undefined],
    ['sleep infinity', { exec: { command: ['sleep', 'infinity'] } }, undefined],
    ['sh without -c', { exec: { command: ['sh', 'stop.sh', 'x'] } }, undefined],
    ['sleepy is not sleep', { exec: { command: ['sh', '-c', 'sleepy 40'] } }, undefined],
  ])('%s', (_title, hook, want) => {
    expect(preStopSummary(hook as V1LifecycleHandler)).toEqual(want);
  });
});
