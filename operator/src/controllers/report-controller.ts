// The policy report controller (policy-report) keeps the policy reports (policy/reports.ts) in
// step with the status. What wakes it: the status controller publishing every verdict of a pass
// (PublishedStatuses.published; not only the status's first 100). It writes one
// report per namespace where the content changed and deletes the ones of namespaces the policy no
// longer covers. A separate controller so that a report API that is missing or failing never
// holds up the status. Reports are owned by their policy: deleting it deletes them (GC).
import type { WorkloadStatus } from '../api/policy.ts';
import type { ReportStore } from '../kube/reports.ts';
import type { Logger } from '../log.ts';
import { policyReports, type ReportBody, sameReport } from '../policy/reports.ts';
import { Controller, type Reconcile } from '../runtime/controller.ts';
import type { RuntimeMetrics } from '../runtime/metrics.ts';
import { Trigger } from '../runtime/trigger.ts';
import type { OperatorMetrics } from './metrics.ts';

export const POLICY_REPORT_CONTROLLER = 'policy-report';

interface Published {
  uid: string;
  workloads: WorkloadStatus[];
  uids: Map<string, string>;
  at: Date;
}

/**
 * The workload statuses (every verdict) per policy, from the status controller's last pass, until the report
 * controller has handled them: every verdict of a 10,000-Deployment policy is kept only between
 * a status pass and the report pass after it, not for the life of the process.
 */
export class PublishedStatuses {
  /** A pass published the policy's workload statuses. */
  readonly published = new Trigger<[policy: string]>();
  readonly #latest = new Map<string, Published>();

  publish(
    policy: { name: string; uid: string },
    workloads: WorkloadStatus[],
    uids: Map<string, string>,
    at: Date,
  ): void {
    this.#latest.set(policy.name, { uid: policy.uid, workloads, uids, at });
    this.published.emit(policy.name);
  }

  /** These statuses are handled: dropped, unless a newer pass has published since. */
  handled(policy: string, published: Published): void {
    if (this.#latest.get(policy) === published) this.#latest.delete(policy);
  }

  get(policy: string): Published | undefined {
    return this.#latest.get(policy);
  }
}

export interface ReportControllerDeps {
  published: PublishedStatuses;
  store: ReportStore;
  metrics: Pick<OperatorMetrics, 'reportWrites'>;
  /** Without a report API, look again this often (a CRD installed later). */
  resyncMs: number;
}

export function reportReconciler(deps: ReportControllerDeps): Reconcile {
  return async (policy, signal, log) => {
    const published = deps.published.get(policy);
    // The policy is gone (its reports go with it, GC) or not yet evaluated.
    if (!published) return;
    const api = await deps.store.servedApi(signal);
    if (!api) {
      log.debug({ policy }, 'no report API served (openreports.io, wgpolicyk8s.io): no reports');
      // The status resync publishes again, and a report API installed since is found then.
      deps.published.handled(policy, published);
      return { requeueAfterMs: deps.resyncMs };
    }
    const wanted = policyReports({
      api,
      policy,
      workloads: published.workloads,
      uids: published.uids,
      timestamp: published.at,
    });
    const existing = await deps.store.list(api, policy, signal);
    let writes = 0;
    for (const report of wanted) {
      const current = existing.find(
        (e) => e.namespace === report.metadata.namespace && e.name === report.metadata.name,
      );
      if (current && sameReport(normalized(current.body), report)) continue;
      signal.throwIfAborted();
      await deps.store.apply(api, report, { name: policy, uid: published.uid }, signal);
      deps.metrics.reportWrites.inc({ policy, operation: 'apply' });
      writes++;
    }
    for (const stale of existing) {
      if (wanted.some((r) => r.metadata.namespace === stale.namespace && r.metadata.name === stale.name))
        continue;
      signal.throwIfAborted();
      await deps.store.delete(api, stale.namespace, stale.name, signal);
      deps.metrics.reportWrites.inc({ policy, operation: 'delete' });
      writes++;
    }
    if (writes > 0) log.info({ policy, api, reports: wanted.length, writes }, 'policy reports updated');
    // A failed write throws before this: the reconcile is retried with the statuses still there.
    deps.published.handled(policy, published);
  };
}

/** A stored report in the shape policyReports builds (the apiserver adds metadata and defaults). */
function normalized(body: ReportBody): ReportBody {
  return {
    apiVersion: body.apiVersion,
    kind: body.kind,
    metadata: { name: body.metadata.name, namespace: body.metadata.namespace, labels: body.metadata.labels },
    source: body.source,
    summary: body.summary,
    results: body.results ?? [],
  };
}

/** The controller with its watch (the statuses published), ready for the manager. */
export function reportController(
  deps: ReportControllerDeps,
  options: { logger: Logger; metrics: RuntimeMetrics },
): Controller {
  const controller = new Controller({
    name: POLICY_REPORT_CONTROLLER,
    workers: 1,
    ...options,
    reconcile: reportReconciler(deps),
  });
  deps.published.published.on((policy) => controller.enqueue(policy));
  return controller;
}
