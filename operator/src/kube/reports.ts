// Thin adapter for policy reports: which report API the cluster serves (discovery), and
// server-side apply, list and delete of the operator's reports in either group.
import {
  type ApisApi,
  type CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { FIELD_MANAGER } from '../api/annotations.ts';
import { API_VERSION, KIND } from '../api/policy.ts';
import { REPORT_APIS, type ReportApi, type ReportBody } from '../policy/reports.ts';
import { abortOptions, apiErrorMessage, httpStatusOf } from './client.ts';

export interface StoredReport {
  namespace: string;
  name: string;
  body: ReportBody;
}

export interface ReportStore {
  /** openreports.io where served (where report tools are moving), else wgpolicyk8s.io, else none. */
  servedApi(signal: AbortSignal): Promise<ReportApi | undefined>;
  /** The operator's reports for one policy, in every namespace. */
  list(api: ReportApi, policy: string, signal: AbortSignal): Promise<StoredReport[]>;
  /** Server-side apply, owned by the policy (garbage-collected with it). */
  apply(
    api: ReportApi,
    report: ReportBody,
    owner: { name: string; uid: string },
    signal: AbortSignal,
  ): Promise<void>;
  delete(api: ReportApi, namespace: string, name: string, signal: AbortSignal): Promise<void>;
}

export function createReportStore(apis: ApisApi, custom: CustomObjectsApi): ReportStore {
  return {
    async servedApi(signal) {
      const groups = await apis.getAPIVersions(abortOptions(signal));
      const serves = (api: ReportApi) =>
        groups.groups.some(
          (g) =>
            g.name === REPORT_APIS[api].group &&
            g.versions.some((v) => v.version === REPORT_APIS[api].version),
        );
      if (serves('openreports')) return 'openreports';
      if (serves('wgpolicyk8s')) return 'wgpolicyk8s';
      return undefined;
    },
    async list(api, policy, signal) {
      const { group, version, plural } = REPORT_APIS[api];
      const list = (await custom.listClusterCustomObject(
        { group, version, plural, labelSelector: `gracefulshutdown.dev/policy=${policy}` },
        abortOptions(signal),
      )) as { items?: ReportBody[] };
      return (list.items ?? []).map((body) => ({
        namespace: body.metadata.namespace,
        name: body.metadata.name,
        body,
      }));
    },
    async apply(api, report, owner, signal) {
      const { group, version, plural } = REPORT_APIS[api];
      const body = {
        ...report,
        metadata: {
          ...report.metadata,
          ownerReferences: [{ apiVersion: API_VERSION, kind: KIND, name: owner.name, uid: owner.uid }],
        },
      };
      try {
        await custom.patchNamespacedCustomObject(
          {
            group,
            version,
            plural,
            namespace: report.metadata.namespace,
            name: report.metadata.name,
            body,
            fieldManager: FIELD_MANAGER,
            force: true,
          },
          setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply, abortOptions(signal)),
        );
      } catch (error) {
        throw new Error(
          `applying ${report.kind} ${report.metadata.namespace}/${report.metadata.name}: ${apiErrorMessage(error)}`,
          { cause: error },
        );
      }
    },
    async delete(api, namespace, name, signal) {
      const { group, version, plural } = REPORT_APIS[api];
      try {
        await custom.deleteNamespacedCustomObject(
          { group, version, plural, namespace, name },
          abortOptions(signal),
        );
      } catch (error) {
        if (httpStatusOf(error) !== 404) throw error;
      }
    },
  };
}
