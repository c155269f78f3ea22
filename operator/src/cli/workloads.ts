// Which objects `gsp audit` reads a pod template from, and where: the built-in workload kinds in
// every apiVersion they were served under, and well-known custom workloads with a `spec.template`.
// Pure: an object in, what it is out. A kustomize patch (a partial object) is told apart from a
// whole one, so that it is not judged as one.
import type { V1PodSpec } from '@kubernetes/client-node';
import { malformedPodSpecField } from '../policy/pod-shape.ts';
import { isRecord } from '../util/is-record.ts';

export interface WorkloadKind {
  kind: string;
  apiVersions: readonly string[];
  /** Where the pod spec is, from the object's root. */
  podSpecPath: readonly string[];
  /**
   * Long-running pods that can serve behind a Service: the readiness rules apply. Jobs and
   * CronJobs run to completion and get only the shutdown checks.
   */
  serves: boolean;
  /** Who defines the kind, when it is not Kubernetes itself (docs/audit.md). */
  project?: string;
}

const TEMPLATE = ['spec', 'template', 'spec'] as const;

/**
 * Every kind read. Removed apiVersions are read too (manifests outlive them): apps/v1beta1 and
 * extensions/v1beta1 Deployments were served until Kubernetes 1.16, batch/v1beta1 CronJobs until
 * 1.25.
 */
export const WORKLOAD_KINDS: readonly WorkloadKind[] = [
  {
    kind: 'Deployment',
    apiVersions: ['apps/v1', 'apps/v1beta2', 'apps/v1beta1', 'extensions/v1beta1'],
    podSpecPath: TEMPLATE,
    serves: true,
  },
  {
    kind: 'StatefulSet',
    apiVersions: ['apps/v1', 'apps/v1beta2', 'apps/v1beta1'],
    podSpecPath: TEMPLATE,
    serves: true,
  },
  {
    kind: 'DaemonSet',
    apiVersions: ['apps/v1', 'apps/v1beta2', 'extensions/v1beta1'],
    podSpecPath: TEMPLATE,
    serves: true,
  },
  {
    kind: 'ReplicaSet',
    apiVersions: ['apps/v1', 'apps/v1beta2', 'extensions/v1beta1'],
    podSpecPath: TEMPLATE,
    serves: true,
  },
  { kind: 'ReplicationController', apiVersions: ['v1'], podSpecPath: TEMPLATE, serves: true },
  { kind: 'Pod', apiVersions: ['v1'], podSpecPath: ['spec'], serves: true },
  { kind: 'PodTemplate', apiVersions: ['v1'], podSpecPath: ['template', 'spec'], serves: true },
  { kind: 'Job', apiVersions: ['batch/v1'], podSpecPath: TEMPLATE, serves: false },
  {
    kind: 'CronJob',
    apiVersions: ['batch/v1', 'batch/v1beta1', 'batch/v2alpha1'],
    podSpecPath: ['spec', 'jobTemplate', 'spec', 'template', 'spec'],
    serves: false,
  },
  // Argo Rollouts: a Deployment with progressive delivery; spec.template, or spec.workloadRef
  // naming a Deployment whose template it uses.
  {
    kind: 'Rollout',
    apiVersions: ['argoproj.io/v1alpha1'],
    podSpecPath: TEMPLATE,
    serves: true,
    project: 'Argo Rollouts',
  },
  // OpenKruise: CloneSet, Advanced StatefulSet and Advanced DaemonSet keep the built-in shape.
  {
    kind: 'CloneSet',
    apiVersions: ['apps.kruise.io/v1alpha1'],
    podSpecPath: TEMPLATE,
    serves: true,
    project: 'OpenKruise',
  },
  {
    kind: 'StatefulSet',
    apiVersions: ['apps.kruise.io/v1beta1', 'apps.kruise.io/v1alpha1'],
    podSpecPath: TEMPLATE,
    serves: true,
    project: 'OpenKruise',
  },
  {
    kind: 'DaemonSet',
    apiVersions: ['apps.kruise.io/v1alpha1'],
    podSpecPath: TEMPLATE,
    serves: true,
    project: 'OpenKruise',
  },
];

/** The kind of an object, or undefined when it has no pod template gsp knows of. */
export function workloadKind(object: Record<string, unknown>): WorkloadKind | undefined {
  return WORKLOAD_KINDS.find(
    (k) => k.kind === object.kind && k.apiVersions.includes(String(object.apiVersion)),
  );
}

/** A Deployment in any apiVersion: the operator's policies govern it (the apiserver serves it as apps/v1). */
export const isDeploymentKind = (kind: WorkloadKind) => kind.kind === 'Deployment' && !kind.project;

export function pathText(path: readonly (string | number)[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

/** The path a pathText wrote: "spec.containers[0].ports" -> spec, containers, 0, ports. */
export function parsePath(text: string): (string | number)[] {
  return [...text.matchAll(/([^.[\]]+)|\[(\d+)\]/g)].map((m) =>
    m[2] === undefined ? (m[1] as string) : Number(m[2]),
  );
}

/**
 * What in the pod template is not the shape Kubernetes requires, so that reading it as a pod
 * spec would be a guess: the path of the first such field, or undefined. Parts that are absent
 * are not malformed (a patch leaves them out).
 */
export function malformedField(object: Record<string, unknown>, kind: WorkloadKind): string | undefined {
  let at: unknown = object;
  for (const [i, key] of kind.podSpecPath.entries()) {
    if (!isRecord(at)) return pathText(kind.podSpecPath.slice(0, i));
    at = at[key];
    if (at === undefined || at === null) return undefined;
  }
  return malformedPodSpecField(at, pathText(kind.podSpecPath), true);
}

export type Classified =
  /** A whole workload: its pod spec is there to audit. */
  | { kind: 'Workload'; workload: WorkloadKind; podSpec: V1PodSpec }
  /** Its pod template is not the shape Kubernetes requires (the field's path). */
  | { kind: 'Malformed'; workload: WorkloadKind; field: string }
  /** Part of a workload, as a kustomize patch is: only what it sets is checked. */
  | { kind: 'Partial'; workload: WorkloadKind; reason: string }
  /** A workload without a template of its own (an Argo Rollout with workloadRef). */
  | { kind: 'NoTemplate'; workload: WorkloadKind; reason: string }
  /** Not a kind with a pod template. */
  | { kind: 'Other' };

/**
 * What the object is to the audit. `patch` says its file is a patch (named by a kustomization):
 * then it is Partial whatever it holds.
 */
export function classify(object: Record<string, unknown>, patch: boolean): Classified {
  const workload = workloadKind(object);
  if (!workload) return { kind: 'Other' };
  const field = malformedField(object, workload);
  if (field !== undefined) return { kind: 'Malformed', workload, field };
  if (patch) return { kind: 'Partial', workload, reason: 'a patch named by a kustomization' };
  const spec = isRecord(object.spec) ? object.spec : undefined;
  if (workload.kind === 'Rollout' && spec?.template === undefined && isRecord(spec?.workloadRef))
    return {
      kind: 'NoTemplate',
      workload,
      reason: `spec.workloadRef: the template of ${String(spec.workloadRef.kind ?? 'Deployment')} ${String(spec.workloadRef.name ?? '')} is audited where it is defined`,
    };
  let podSpec: unknown = object;
  for (const key of workload.podSpecPath) podSpec = isRecord(podSpec) ? podSpec[key] : undefined;
  // A whole workload has containers, each with an image (the apiserver requires both); a patch
  // fragment names a container to change only a field of it.
  const containers = isRecord(podSpec) && Array.isArray(podSpec.containers) ? podSpec.containers : [];
  if (containers.length === 0)
    return {
      kind: 'Partial',
      workload,
      reason: `no ${pathText([...workload.podSpecPath, 'containers'])}: part of an object (a patch?)`,
    };
  const imageless = containers.find((c) => isRecord(c) && (typeof c.image !== 'string' || c.image === ''));
  if (imageless !== undefined)
    return {
      kind: 'Partial',
      workload,
      reason: `container ${String((imageless as Record<string, unknown>).name ?? '')} has no image: part of an object (a patch?)`,
    };
  return { kind: 'Workload', workload, podSpec: podSpec as V1PodSpec };
}

/**
 * The files a kustomization names as patches (patchesStrategicMerge, patches[].path,
 * patchesJson6902[].path), relative to its directory: they hold parts of objects.
 */
export function kustomizationPatches(kustomization: unknown): string[] {
  if (!isRecord(kustomization)) return [];
  const paths: string[] = [];
  const strategic = kustomization.patchesStrategicMerge;
  if (Array.isArray(strategic))
    // An entry is a path, or an inline patch (YAML text with a newline): only paths are files.
    for (const p of strategic) if (typeof p === 'string' && !p.includes('\n')) paths.push(p);
  for (const list of [kustomization.patches, kustomization.patchesJson6902])
    if (Array.isArray(list))
      for (const p of list) if (isRecord(p) && typeof p.path === 'string') paths.push(p.path);
  return paths;
}

/** The names kustomize reads a kustomization from, in a directory. */
export const KUSTOMIZATION_FILES = ['kustomization.yaml', 'kustomization.yml', 'Kustomization'] as const;
