import { describe, expect, test } from 'vitest';
import type { WorkloadStatus } from '../api/policy.ts';
import { MAX_RESULTS, policyReports, reportName, sameReport } from './reports.ts';

const w = (
  namespace: string,
  name: string,
  verdict: WorkloadStatus['verdict'],
  extra: Partial<WorkloadStatus> = {},
): WorkloadStatus => ({
  namespace,
  name,
  verdict,
  reason: verdict === 'Compliant' ? 'SettingsMatch' : verdict === 'Exempt' ? 'OptedOut' : 'PreStopMissing',
  ...extra,
});

const at = new Date('2026-11-30T12:00:00.500Z');

describe('policyReports', () => {
  test('one report per namespace, a result per Deployment with its verdict mapped, and the summary', () => {
    const reports = policyReports({
      api: 'openreports',
      policy: 'web-tier',
      workloads: [
        w('shop', 'web', 'NonCompliant', {
          message: 'containers[web].preStop: missing -> sleep 5s',
          recommended: { terminationGracePeriodSeconds: 47, preStop: { action: 'Sleep', seconds: 10 } },
          applied: { terminationGracePeriodSeconds: 30 },
          observedLatency: {
            source: 'Prometheus',
            percentile: 0.99,
            seconds: 21.3,
            samples: 5000,
            window: '6h',
          },
        }),
        w('shop', 'api', 'Compliant'),
        w('blog', 'cms', 'Exempt'),
        w('shop', 'broken', 'Unknown'),
      ],
      uids: new Map([['shop/web', 'uid-web']]),
      timestamp: at,
    });
    expect(reports.map((r) => [r.metadata.namespace, r.kind, r.apiVersion, r.metadata.name])).toEqual([
      ['blog', 'Report', 'openreports.io/v1alpha1', 'gsp-web-tier'],
      ['shop', 'Report', 'openreports.io/v1alpha1', 'gsp-web-tier'],
    ]);
    const shop = reports[1];
    expect(shop?.summary).toEqual({ pass: 1, fail: 1, warn: 0, error: 1, skip: 0 });
    expect(shop?.results.map((r) => [r.resources[0]?.name, r.result, r.severity])).toEqual([
      ['api', 'pass', 'info'],
      ['broken', 'error', 'info'],
      ['web', 'fail', 'medium'],
    ]);
    expect(shop?.results[2]).toMatchObject({
      policy: 'web-tier',
      rule: 'graceful-shutdown-settings',
      category: 'Graceful Shutdown',
      message: 'containers[web].preStop: missing -> sleep 5s',
      resources: [
        { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'shop', name: 'web', uid: 'uid-web' },
      ],
      properties: {
        reason: 'PreStopMissing',
        recommendedGraceSeconds: '47',
        appliedGraceSeconds: '30',
        recommendedPreStopSeconds: '10',
        observedLatencySeconds: '21.3',
        observedPercentile: '0.99',
      },
      timestamp: { seconds: 1796040000, nanos: 0 },
    });
    expect(reports[0]?.summary.skip).toBe(1);
  });

  test('the wgpolicyk8s group carries the same content as PolicyReport', () => {
    const [report] = policyReports({
      api: 'wgpolicyk8s',
      policy: 'p',
      workloads: [w('shop', 'web', 'Compliant')],
      timestamp: at,
    });
    expect([report?.apiVersion, report?.kind]).toEqual(['wgpolicyk8s.io/v1alpha2', 'PolicyReport']);
  });

  test('bounded: at most MAX_RESULTS results, while the summary counts every Deployment', () => {
    const many = Array.from({ length: MAX_RESULTS + 5 }, (_, i) =>
      w('shop', `d${String(i).padStart(5, '0')}`, 'NonCompliant'),
    );
    const [report] = policyReports({ api: 'openreports', policy: 'p', workloads: many, timestamp: at });
    expect(report?.results).toHaveLength(MAX_RESULTS);
    expect(report?.summary.fail).toBe(MAX_RESULTS + 5);
  });

  test('the same verdicts later are the same report (no write); a changed verdict is not', () => {
    const make = (verdict: WorkloadStatus['verdict'], when: Date) =>
      policyReports({
        api: 'openreports',
        policy: 'p',
        workloads: [w('shop', 'web', verdict)],
        timestamp: when,
      })[0];
    const first = make('NonCompliant', at);
    const later = make('NonCompliant', new Date(at.getTime() + 60_000));
    const fixed = make('Compliant', new Date(at.getTime() + 60_000));
    if (!first || !later || !fixed) throw new Error('no report');
    expect(sameReport(first, later)).toBe(true);
    // As the apiserver returns it: keys in another order.
    const stored = {
      ...first,
      results: first.results.map((r) => Object.fromEntries(Object.entries(r).reverse())),
    } as typeof first;
    expect(sameReport(stored, later)).toBe(true);
    expect(sameReport(first, fixed)).toBe(false);
  });

  test('names are per policy', () => {
    expect(reportName('web-tier')).toBe('gsp-web-tier');
  });
});
