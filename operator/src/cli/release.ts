// `gsp release`: lets go of every Deployment the operator manages, for an uninstall or a move to
// another tool, without restarting a pod. Per Deployment, in server-side applies under the
// operator's field manager (as the operator's own release does, controllers/deployment/
// release.ts): the values it wrote stay exactly as they are and its record annotation goes. With
// --to-manager, the values' field ownership is first shared with that manager (the same values
// applied under its name), then the operator's managedFields entries and its record are removed
// in a JSON Patch guarded by tests, so a GitOps tool or a person owns them afterwards. No write
// changes the pod template, so no ReplicaSet is made and no pod restarts (the Deployment's
// generation does move: the apiserver counts a change of a Deployment's annotations, which it
// copies to its ReplicaSets); each write's result is compared with the template before, and a
// Deployment whose template changed is named.
//
// The operator must not run meanwhile (it would manage them again): its Lease is read first, and a
// Lease renewed within its duration stops the command unless --force.
import { isDeepStrictEqual, parseArgs } from 'node:util';
import type { KubeConfig, V1Deployment, V1Lease } from '@kubernetes/client-node';
import { APPLIED_ANNOTATION, FIELD_MANAGER } from '../api/annotations.ts';
import {
  type ApplyConfiguration,
  type JsonPatchOperation,
  keepConfiguration,
  ownedFields,
} from '../policy/ownership.ts';

export const releaseUsage = `usage: gsp release [flags]
  Lets go of every Deployment the operator manages: its record annotation goes, the values it
  wrote (readiness probe, preStop, grace period, mirror annotations) stay, and no pod restarts.
  Stop the operator first (scale it to 0, or uninstall it).
      --kubeconfig <file>          (default: $KUBECONFIG, ~/.kube/config, in-cluster)
  -n, --namespace <name>           only this namespace (default: every namespace)
      --to-manager <name>          hand the values' field ownership to this field manager (the
                                   name your GitOps tool applies with), instead of keeping it
                                   under the operator's (graceful-shutdown-operator)
      --dry-run                    say what would be released; write nothing (server-side dry
                                   run of the release)
      --force                      even while the operator's Lease is held
      --operator-namespace <name>  where the operator's Lease is (default graceful-shutdown-system)
      --lease <name>               the Lease's name (default graceful-shutdown-operator)
exit codes: 0 all released (or none to release), 1 some not released or restarted, 2 usage
error, 3 the cluster could not be read or the operator is running`;

export const RELEASE_EXIT = { ok: 0, failed: 1, usage: 2, cluster: 3 } as const;

interface Io {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

/** The pod template as plain data, for comparing before and after. */
const templateOf = (d: V1Deployment): unknown => JSON.parse(JSON.stringify(d.spec?.template ?? null));

/** The Deployment's name as shown: namespace/name. */
const nameOf = (d: V1Deployment) => `${d.metadata?.namespace}/${d.metadata?.name}`;

/** Who holds the Lease and when it was last renewed, as read; undefined holder: free (released). */
export function leaseView(lease: V1Lease): { holder?: string; renewed?: string; duration: number } {
  const { holderIdentity, renewTime, leaseDurationSeconds } = lease.spec ?? {};
  return {
    ...(holderIdentity ? { holder: holderIdentity } : {}),
    ...(renewTime ? { renewed: new Date(renewTime as unknown as string).toISOString() } : {}),
    duration: leaseDurationSeconds ?? 15,
  };
}

/**
 * Whether the operator is running, by watching its Lease rather than comparing its renewTime
 * with this machine's clock (which may be off): free when no one holds it; held when it is
 * renewed (or changes hands) within its duration; stale when a holder stopped renewing.
 */
export async function operatorRunning(
  read: () => Promise<V1Lease>,
  sleep: (ms: number) => Promise<void>,
): Promise<{ state: 'free' } | { state: 'held' | 'stale'; holder: string; seconds: number }> {
  const first = leaseView(await read());
  if (first.holder === undefined) return { state: 'free' };
  const deadline = first.duration + 1;
  for (let waited = 1; waited <= deadline; waited++) {
    await sleep(1000);
    const now = leaseView(await read());
    if (now.holder === undefined) return { state: 'free' };
    if (now.holder !== first.holder || now.renewed !== first.renewed)
      return { state: 'held', holder: now.holder, seconds: waited };
  }
  return { state: 'stale', holder: first.holder, seconds: deadline };
}

/**
 * The apply that keeps the operator's values of one Deployment without its record: under the
 * operator's field manager for a release, under `toManager` for a hand-over (the values then
 * have both owners, until handOverPatch). Undefined when the operator owns nothing there and has
 * no record.
 */
export function keepApply(
  deployment: V1Deployment,
  toManager: string | undefined,
): { manager: string; config: ApplyConfiguration } | undefined {
  const owned = ownedFields(deployment);
  if (!owned) return undefined;
  return { manager: toManager ?? FIELD_MANAGER, config: keepConfiguration(deployment, owned) };
}

/** JSON Pointer escaping of one path segment (RFC 6901). */
const pointer = (segment: string) => segment.replaceAll('~', '~0').replaceAll('/', '~1');

/**
 * The hand-over's second write: the operator's managedFields entries (Apply and Update, not a
 * subresource's) and its record annotation removed, each guarded by a test of what is removed.
 * It changes no value of the object, only who owns it. Removed from the last entry back, so the
 * indexes stay right.
 */
export function handOverPatch(deployment: V1Deployment): JsonPatchOperation[] {
  const operations: JsonPatchOperation[] = [];
  const entries = deployment.metadata?.managedFields ?? [];
  for (let index = entries.length - 1; index >= 0; index--) {
    const entry = entries[index];
    if (entry?.manager !== FIELD_MANAGER || entry.subresource) continue;
    const path = `/metadata/managedFields/${index}`;
    operations.push(
      { op: 'test', path: `${path}/manager`, value: FIELD_MANAGER },
      { op: 'test', path: `${path}/operation`, value: entry.operation ?? '' },
      { op: 'remove', path },
    );
  }
  const record = deployment.metadata?.annotations?.[APPLIED_ANNOTATION];
  if (record !== undefined) {
    const path = `/metadata/annotations/${pointer(APPLIED_ANNOTATION)}`;
    operations.push({ op: 'test', path, value: record }, { op: 'remove', path });
  }
  return operations;
}

/** What the release keeps, in a few words: grace 35 s, preStop on app, readinessProbe on app. */
export function describeKept(deployment: V1Deployment): string {
  const owned = ownedFields(deployment);
  if (!owned) return 'nothing of the operator’s';
  const parts: string[] = [];
  if (owned.terminationGracePeriodSeconds !== undefined)
    parts.push(`grace ${deployment.spec?.template?.spec?.terminationGracePeriodSeconds} s`);
  for (const [container, fields] of Object.entries(owned.containers)) {
    if (fields.preStop) parts.push(`preStop on ${container}`);
    if (fields.readinessProbe) parts.push(`readinessProbe on ${container}`);
  }
  if ((owned.templateAnnotations ?? []).length > 0) parts.push('mirror annotations');
  return parts.length === 0 ? 'no values' : parts.join(', ');
}

export async function runRelease(
  argv: string[],
  io: Io,
  sleep: (ms: number) => Promise<void> = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
): Promise<number> {
  let values: {
    kubeconfig?: string | undefined;
    namespace?: string | undefined;
    'to-manager'?: string | undefined;
    'dry-run': boolean;
    force: boolean;
    'operator-namespace': string;
    lease: string;
    help: boolean;
  };
  try {
    ({ values } = parseArgs({
      args: argv,
      allowPositionals: false,
      options: {
        kubeconfig: { type: 'string' },
        namespace: { type: 'string', short: 'n' },
        'to-manager': { type: 'string' },
        'dry-run': { type: 'boolean', default: false },
        force: { type: 'boolean', default: false },
        'operator-namespace': { type: 'string', default: 'graceful-shutdown-system' },
        lease: { type: 'string', default: 'graceful-shutdown-operator' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (error) {
    io.stderr(`gsp release: ${(error as Error).message}\n${releaseUsage}\n`);
    return RELEASE_EXIT.usage;
  }
  if (values.help) {
    io.stdout(`${releaseUsage}\n`);
    return RELEASE_EXIT.ok;
  }
  const toManager = values['to-manager'];
  // A field manager name: what the apiserver accepts (printable, at most 128 characters).
  if (toManager !== undefined && !/^[\x21-\x7e][\x20-\x7e]{0,127}$/.test(toManager)) {
    io.stderr(
      'gsp release: --to-manager: want a field manager name (printable ASCII, at most 128 characters)\n',
    );
    return RELEASE_EXIT.usage;
  }

  // Loaded here, as for audit --cluster: the client takes longer to load than an audit takes.
  const { AppsV1Api, CoordinationV1Api, PatchStrategy, setHeaderOptions } = await import(
    '@kubernetes/client-node'
  );
  const { loadKubeConfig } = await import('../kube/client.ts');
  const { describeRequestError } = await import('../kube/preflight.ts');
  let kc: KubeConfig;
  try {
    kc = loadKubeConfig(values.kubeconfig ? { path: values.kubeconfig } : {});
  } catch (error) {
    io.stderr(`gsp release: ${(error as Error).message}\n`);
    return RELEASE_EXIT.cluster;
  }
  const server = kc.getCurrentCluster()?.server;
  const apps = kc.makeApiClient(AppsV1Api);

  // The operator must not be running: it would take the Deployments back.
  const where = `Lease ${values['operator-namespace']}/${values.lease}`;
  const leases = kc.makeApiClient(CoordinationV1Api);
  try {
    const running = await operatorRunning(
      () => leases.readNamespacedLease({ name: values.lease, namespace: values['operator-namespace'] }),
      sleep,
    );
    if (running.state === 'held' && !values.force) {
      io.stderr(
        `gsp release: the operator is running (${where} held by ${running.holder}, renewed within ${running.seconds} s): it would manage these Deployments again; stop it first (scale its Deployment to 0, or uninstall it), or --force\n`,
      );
      return RELEASE_EXIT.cluster;
    }
    if (running.state === 'stale')
      io.stderr(
        `gsp release: note: ${where} names ${running.holder}, who has not renewed it for ${running.seconds} s\n`,
      );
  } catch (error) {
    // No Lease where we looked: installed in another namespace, another Lease name, or leader
    // election off. Nothing says the operator is stopped.
    const missing = (error as { code?: number }).code === 404;
    if (!values.force) {
      io.stderr(
        missing
          ? `gsp release: no ${where}: cannot tell whether the operator is running (installed in another namespace? --operator-namespace, --lease); stop it and rerun with --force\n`
          : `gsp release: cannot read the operator's ${where} from ${server}: ${describeRequestError(error)}; stop the operator and rerun with --force\n`,
      );
      return RELEASE_EXIT.cluster;
    }
  }

  let deployments: V1Deployment[] = [];
  try {
    let _continue: string | undefined;
    do {
      const page = values.namespace
        ? await apps.listNamespacedDeployment({ namespace: values.namespace, limit: 500, _continue })
        : await apps.listDeploymentForAllNamespaces({ limit: 500, _continue });
      deployments.push(...page.items);
      _continue = page.metadata?._continue || undefined;
    } while (_continue);
  } catch (error) {
    io.stderr(`gsp release: cannot list Deployments from ${server}: ${describeRequestError(error)}\n`);
    return RELEASE_EXIT.cluster;
  }
  // Managed: the operator's record is there. Handing over also takes Deployments released
  // before (no record) whose values the operator's field manager still owns.
  const handOver = toManager !== undefined && toManager !== FIELD_MANAGER;
  deployments = deployments.filter((d) =>
    handOver
      ? keepApply(d, undefined) !== undefined
      : d.metadata?.annotations?.[APPLIED_ANNOTATION] !== undefined,
  );
  if (deployments.length === 0) {
    io.stdout(
      handOver
        ? 'gsp release: the operator owns nothing on any Deployment\n'
        : 'gsp release: no Deployment is managed by the operator\n',
    );
    return RELEASE_EXIT.ok;
  }

  const dryRun = values['dry-run'] ? { dryRun: 'All' } : {};
  const apply = (manager: string, config: ApplyConfiguration) =>
    apps.patchNamespacedDeployment(
      {
        name: config.metadata.name,
        namespace: config.metadata.namespace,
        body: config,
        fieldManager: manager,
        // The values are the live ones: sharing them conflicts with nobody, and nothing is forced.
        force: false,
        fieldValidation: 'Strict',
        ...dryRun,
      },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    );
  const patch = (deployment: V1Deployment, manager: string, operations: JsonPatchOperation[]) =>
    apps.patchNamespacedDeployment(
      {
        name: deployment.metadata?.name ?? '',
        namespace: deployment.metadata?.namespace ?? '',
        body: operations,
        fieldManager: manager,
        ...dryRun,
      },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
    );
  let failed = 0;
  for (const deployment of deployments) {
    const keep = keepApply(deployment, toManager);
    if (!keep) {
      failed++;
      io.stderr(`gsp release: ${nameOf(deployment)}: not released: its record cannot be read\n`);
      continue;
    }
    const before = templateOf(deployment);
    const kept = describeKept(deployment);
    try {
      const applied = await apply(keep.manager, keep.config);
      let after = applied;
      // A dry run's apply is not stored: the hand-over patch is tried on the live object.
      if (handOver)
        after = await patch(deployment, toManager, handOverPatch(values['dry-run'] ? deployment : applied));
      // A record another manager co-owns (an old Update entry, or written by someone else)
      // survives the apply: removed by a guarded patch.
      const record = after.metadata?.annotations?.[APPLIED_ANNOTATION];
      if (record !== undefined && !values['dry-run']) {
        const path = `/metadata/annotations/${pointer(APPLIED_ANNOTATION)}`;
        after = await patch(after, FIELD_MANAGER, [
          { op: 'test', path, value: record },
          { op: 'remove', path },
        ]);
      }
      const restarted =
        !isDeepStrictEqual(templateOf(applied), before) || !isDeepStrictEqual(templateOf(after), before);
      if (restarted) failed++;
      io.stdout(
        `${values['dry-run'] ? 'would release' : 'released'} ${nameOf(deployment)}: kept ${kept} (owned by ${keep.manager}); ${
          restarted ? 'its pod template changed: its pods restart' : 'no restart'
        }\n`,
      );
    } catch (error) {
      failed++;
      io.stderr(`gsp release: ${nameOf(deployment)}: not released: ${describeRequestError(error)}\n`);
    }
  }
  io.stdout(
    `gsp release: ${deployments.length - failed} of ${deployments.length} Deployments ${values['dry-run'] ? 'would be released' : 'released'} without a restart\n`,
  );
  if (handOver)
    io.stdout(
      `gsp release: the values now belong to ${toManager} alone: its next server-side apply must carry them (the fields listed as kept), or the apiserver removes them, the pod template changes and the pods restart without these settings\n`,
    );
  return failed === 0 ? RELEASE_EXIT.ok : RELEASE_EXIT.failed;
}
