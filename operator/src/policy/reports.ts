// Policy reports (pure): the per-Deployment verdicts of one policy, as one report per namespace
// in the shape Policy Reporter and other report tools read. Two API groups carry the same shape:
// openreports.io/v1alpha1 Report (where Kyverno is moving) and wgpolicyk8s.io/v1alpha2
// PolicyReport (the original). Facts: ../shared/notes/reports.md.
// controllers/report-controller.ts writes them (server-side apply, owned by the policy, only when
// the content changed) from the status controller's pass.

import type { WorkloadStatus } from '../api/policy.ts';
import { stableJson } from './record-seal.ts';

export const REPORT_APIS = {
  openreports: { group: 'openreports.io', version: 'v1alpha1', kind: 'Report', plural: 'reports' },
  wgpolicyk8s: {
    group: 'wgpolicyk8s.io',
    version: 'v1alpha2',
    kind: 'PolicyReport',
    plural: 'policyreports',
  },
} as const;
export type ReportApi = keyof typeof REPORT_APIS;

export type ReportResultValue = 'pass' | 'fail' | 'warn' | 'error' | 'skip';
export type ReportSeverity = 'critical' | 'high' | 'medium' | 'low' | 'info';

export interface ReportResult {
  policy: string;
  rule: string;
  source: string;
  category: string;
  severity: ReportSeverity;
  result: ReportResultValue;
  message: string;
  scored: boolean;
  resources: { apiVersion: string; kind: string; namespace: string; name: string; uid?: string }[];
  properties: Record<string, string>;
  timestamp: { seconds: number; nanos: number };
}

export interface ReportBody {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; labels: Record<string, string> };
  source: string;
  summary: Record<ReportResultValue, number>;
  results: ReportResult[];
}

export const REPORT_SOURCE = 'graceful-shutdown-operator';
export const REPORT_RULE = 'graceful-shutdown-settings';
export const REPORT_CATEGORY = 'Graceful Shutdown';
/** A report holds at most this many results (etcd objects are bounded); the rest are counted, not listed. */
export const MAX_RESULTS = 1000;

const RESULT_OF: Record<WorkloadStatus['verdict'], ReportResultValue> = {
  Compliant: 'pass',
  NonCompliant: 'fail',
  Exempt: 'skip',
  Unknown: 'error',
};

/** The report's name for a policy: one per policy and namespace, so each is owned by one policy. */
export function reportName(policy: string): string {
  return `gsp-${policy}`.slice(0, 253);
}

function properties(w: WorkloadStatus): Record<string, string> {
  const p: Record<string, string> = { reason: w.reason };
  const recommended = w.recommended?.terminationGracePeriodSeconds;
  const applied = w.applied?.terminationGracePeriodSeconds;
  if (recommended !== undefined) p.recommendedGraceSeconds = String(recommended);
  if (applied !== undefined) p.appliedGraceSeconds = String(applied);
  if (w.recommended?.preStop) p.recommendedPreStopSeconds = String(w.recommended.preStop.seconds);
  const latency = w.observedLatency;
  if (latency?.seconds !== undefined) p.observedLatencySeconds = String(latency.seconds);
  if (latency?.percentile !== undefined) p.observedPercentile = String(latency.percentile);
  return p;
}

/**
 * One report per namespace of the policy's workloads (every verdict, not the status's first
 * 100). `timestamp` is the time the verdicts were computed; `uids` the Deployments' uids.
 */
export function policyReports(input: {
  api: ReportApi;
  policy: string;
  workloads: readonly WorkloadStatus[];
  uids?: ReadonlyMap<string, string>;
  timestamp: Date;
}): ReportBody[] {
  const api = REPORT_APIS[input.api];
  const seconds = Math.floor(input.timestamp.getTime() / 1000);
  const byNamespace = new Map<string, WorkloadStatus[]>();
  for (const w of input.workloads) byNamespace.set(w.namespace, [...(byNamespace.get(w.namespace) ?? []), w]);
  return [...byNamespace.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([namespace, workloads]) => {
      const summary: Record<ReportResultValue, number> = { pass: 0, fail: 0, warn: 0, error: 0, skip: 0 };
      const sorted = [...workloads].sort((a, b) => a.name.localeCompare(b.name));
      for (const w of sorted) summary[RESULT_OF[w.verdict]]++;
      const results = sorted.slice(0, MAX_RESULTS).map((w): ReportResult => {
        const uid = input.uids?.get(`${w.namespace}/${w.name}`);
        return {
          policy: input.policy,
          rule: REPORT_RULE,
          source: REPORT_SOURCE,
          category: REPORT_CATEGORY,
          severity: w.verdict === 'NonCompliant' ? 'medium' : 'info',
          result: RESULT_OF[w.verdict],
          message: w.message ?? w.reason,
          scored: true,
          resources: [
            {
              apiVersion: 'apps/v1',
              kind: 'Deployment',
              namespace: w.namespace,
              name: w.name,
              ...(uid ? { uid } : {}),
            },
          ],
          properties: properties(w),
          timestamp: { seconds, nanos: 0 },
        };
      });
      return {
        apiVersion: `${api.group}/${api.version}`,
        kind: api.kind,
        metadata: {
          name: reportName(input.policy),
          namespace,
          labels: {
            'app.kubernetes.io/managed-by': REPORT_SOURCE,
            'gracefulshutdown.dev/policy': input.policy,
          },
        },
        source: REPORT_SOURCE,
        summary,
        results,
      };
    });
}

/**
 * Whether two reports say the same: the results and summary without their timestamps, so a pass
 * that finds nothing new writes nothing.
 */
export function sameReport(a: ReportBody, b: ReportBody): boolean {
  const strip = (r: ReportBody) =>
    // Keys sorted: the apiserver stores a custom object's keys in its own order.
    stableJson({ ...r, results: r.results.map(({ timestamp: _t, ...rest }) => rest) });
  return strip(a) === strip(b);
}
