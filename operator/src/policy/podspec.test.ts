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
  ])('%s', (_title, hook, want) => {
    expect(preStopSummary(hook as V1LifecycleHandler)).toEqual(want);
  });
});
