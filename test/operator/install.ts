// Installs what a cluster admin installs before the operator runs: its namespace, the CRD and
// the shipped RBAC (config/crd, config/rbac), with the project's kubectl and kustomize.
import { mkdir, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { GROUP, type GracefulShutdownPolicyStatus, PLURAL, VERSION } from '../../operator/src/api/policy.ts';
import { clusterDir } from '../cluster/versions.ts';
import { kubectlOk, type TestCluster } from './kubectl.ts';

export const repoRoot = join(clusterDir, '..', '..');
export const OPERATOR_NAMESPACE = 'graceful-shutdown-system';
export const OPERATOR_SERVICE_ACCOUNT = 'graceful-shutdown-operator';

/** Idempotent: server-side apply of the namespace, CRD and RBAC; waits for the CRD to be served. */
export async function installOperatorPrerequisites(kubectlPath: string, kubeconfig: string): Promise<void> {
  const cluster = { kubectl: kubectlPath, kubeconfig };
  const apply = (dir: string) =>
    kubectlOk(cluster, ['apply', '--server-side', '--field-manager=gso-install', '-k', join(repoRoot, dir)]);
  await kubectlOk(cluster, [
    'apply',
    '--server-side',
    '--field-manager=gso-install',
    '-f',
    join(repoRoot, 'config', 'manager', 'namespace.yaml'),
  ]);
  await apply('config/crd');
  await apply('config/rbac');
  await kubectlOk(cluster, [
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    'crd/gracefulshutdownpolicies.gracefulshutdown.dev',
  ]);
}

export interface OverlayOptions {
  /** Kustomization directories of the repo, e.g. 'config/default'. */
  bases: string[];
  /** Image names in the bases, and the locally built reference that replaces each. */
  images: { name: string; ref: string }[];
  /**
   * Deployments whose pods go to the real node, with imagePullPolicy Never (nothing is pulled),
   * and environment variables added to their first container.
   */
  placeOnRealNode: { name: string; namespace: string; env?: Record<string, string> }[];
  placement: { nodeSelector: Record<string, string>; tolerations: unknown[] };
}

/**
 * Writes a kustomization in dir that takes the repo's bases as they are and only swaps the image
 * and places the pods, as a user's overlay would; `kubectl apply -k dir` installs it.
 */
export async function writeOverlay(dir: string, opts: OverlayOptions): Promise<void> {
  const kustomization = {
    apiVersion: 'kustomize.config.k8s.io/v1beta1',
    kind: 'Kustomization',
    resources: opts.bases.map((b) => relative(dir, join(repoRoot, b))),
    images: opts.images.map(({ name, ref }) => {
      const at = ref.lastIndexOf(':');
      return { name, newName: ref.slice(0, at), newTag: ref.slice(at + 1) };
    }),
    patches: opts.placeOnRealNode.map(({ name, namespace, env }) => ({
      target: { kind: 'Deployment', name, namespace },
      patch: stringify([
        { op: 'add', path: '/spec/template/spec/nodeSelector', value: opts.placement.nodeSelector },
        { op: 'add', path: '/spec/template/spec/tolerations', value: opts.placement.tolerations },
        { op: 'add', path: '/spec/template/spec/containers/0/imagePullPolicy', value: 'Never' },
        ...Object.entries(env ?? {}).map(([k, v]) => ({
          op: 'add',
          path: '/spec/template/spec/containers/0/env/-',
          value: { name: k, value: v },
        })),
      ]),
    })),
  };
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'kustomization.yaml'), stringify(kustomization));
}

export const OPERATOR_DEPLOYMENT = 'graceful-shutdown-operator';
export const DEMO_SERVICE = { namespace: 'demo', name: 'demo-service' } as const;

export interface InClusterInstall {
  cluster: TestCluster;
  /** Where the overlay is written. */
  dir: string;
  image: string;
  placement: OverlayOptions['placement'];
  /** Extra environment for the operator (its flags' variables, e.g. LATENCY_REFRESH_MS). */
  env?: Record<string, string>;
}

/** `kubectl apply -k` of config/default with the image swapped; resolves once rolled out. */
export async function installOperatorInCluster(o: InClusterInstall): Promise<void> {
  await writeOverlay(o.dir, {
    bases: ['config/default'],
    images: [{ name: 'ghcr.io/graceful-shutdown-operator/operator', ref: o.image }],
    placeOnRealNode: [
      { name: OPERATOR_DEPLOYMENT, namespace: OPERATOR_NAMESPACE, ...(o.env ? { env: o.env } : {}) },
    ],
    placement: o.placement,
  });
  await kubectlOk(o.cluster, ['apply', '--server-side', '-k', o.dir]);
  await kubectlOk(o.cluster, [
    'rollout',
    'status',
    `deployment/${OPERATOR_DEPLOYMENT}`,
    '-n',
    OPERATOR_NAMESPACE,
    '--timeout=120s',
  ]);
}

/** `kubectl apply -k` of config/demo (demo-service and its policy) with the image swapped. */
export async function installDemoService(o: InClusterInstall): Promise<void> {
  await writeOverlay(o.dir, {
    bases: ['config/demo'],
    images: [{ name: 'demo-service', ref: o.image }],
    placeOnRealNode: [DEMO_SERVICE],
    placement: o.placement,
  });
  await kubectlOk(o.cluster, ['apply', '--server-side', '-k', o.dir]);
}

/** Creates a GracefulShutdownPolicy (cluster-scoped) with this spec. */
export async function createPolicy(kc: KubeConfig, name: string, spec: object): Promise<void> {
  await kc.makeApiClient(CustomObjectsApi).createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: PLURAL,
    body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'GracefulShutdownPolicy', metadata: { name }, spec },
  });
}

/** Changes a policy with a JSON Patch, e.g. [{ op: 'replace', path: '/spec/mode', value: 'Enforce' }]. */
export async function patchPolicy(kc: KubeConfig, name: string, operations: object[]): Promise<void> {
  await kc
    .makeApiClient(CustomObjectsApi)
    .patchClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, name, body: operations });
}

/** Deletes a policy; a missing one is fine (cleanup paths). */
export async function deletePolicy(kc: KubeConfig, name: string): Promise<void> {
  await kc
    .makeApiClient(CustomObjectsApi)
    .deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, name })
    .catch(() => undefined);
}

/** A policy's status as the apiserver has it (empty before the operator wrote one). */
export async function readPolicyStatus(kc: KubeConfig, name: string): Promise<GracefulShutdownPolicyStatus> {
  const policy = (await kc
    .makeApiClient(CustomObjectsApi)
    .getClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, name })) as {
    status?: GracefulShutdownPolicyStatus;
  };
  return policy.status ?? {};
}
