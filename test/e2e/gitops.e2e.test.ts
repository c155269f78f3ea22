// Another field manager re-applying a non-compliant value, as GitOps tools and people do, against
// the real apiserver: Argo CD's and Flux's server-side apply with force, server-side apply
// without force, kubectl client-side apply (a three-way merge) and a Helm-like upgrade (a
// strategic merge patch under the manager "helm"), each with and without the admission webhook
// in the path. Template changes are counted from a watch (every change of the pod template is
// one rollout; ReplicaSets would hide a flip between two templates, which reuses them).
// docs/gitops.md says what each case does and how to end it.
import { createHash } from 'node:crypto';
import { AppsV1Api, CoreV1Api, makeInformer, type V1Deployment } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type OperatorProcess, readPolicyStatus, waitFor, webManifest } from '../operator/harness.ts';
import {
  adminKubeConfig,
  deleteWebhookConfiguration,
  installWebhookConfiguration,
  kubectl,
  readDeployment,
  startOperatorProcess,
  useNamespace,
  usePolicies,
} from './support.ts';

const plain = useNamespace('gitops');
const webhooked = useNamespace('gitops-webhook');
const policies = usePolicies();
const SYNCS = 4;
const SYNC_EVERY_MS = 5_000;
/** Below the policy's minimum (45 s): every sync sets a non-compliant value. */
const GIT_GRACE = 10;
const WANTED = 45;

/** How each manager writes the manifest; `create` is its first write. */
interface Manager {
  name: string;
  /** The field manager the apiserver records. */
  fieldManager: string;
  /** Whether a re-apply is expected to fail (an SSA conflict). */
  conflicts?: boolean;
  write(namespace: string, deployment: string, grace: number | undefined, first: boolean): Promise<string>;
}

const manifest = (namespace: string, name: string, grace: number | undefined) =>
  webManifest(namespace, name, { replicas: 1, ...(grace === undefined ? {} : { grace }) });

/** kubectl's outcome as one string: '' on success, else its error. */
async function run(args: string[], input?: string): Promise<string> {
  const result = await kubectl(args, input === undefined ? {} : { input });
  return result.code === 0 ? '' : result.stderr.trim() || `exit ${result.code}`;
}

const MANAGERS: Manager[] = [
  {
    name: 'argo-force',
    fieldManager: 'argocd-controller',
    write: (ns, d, grace) =>
      run(
        ['apply', '--server-side', '--force-conflicts', '--field-manager', 'argocd-controller', '-f', '-'],
        manifest(ns, d, grace),
      ),
  },
  {
    name: 'ssa-no-force',
    fieldManager: 'ssa-without-force',
    conflicts: true,
    write: (ns, d, grace) =>
      run(
        ['apply', '--server-side', '--field-manager', 'ssa-without-force', '-f', '-'],
        manifest(ns, d, grace),
      ),
  },
  {
    name: 'client-side',
    fieldManager: 'kubectl-client-side-apply',
    write: (ns, d, grace) => run(['apply', '-f', '-'], manifest(ns, d, grace)),
  },
  {
    name: 'helm-like',
    fieldManager: 'helm',
    // Helm 3 creates, then upgrades with a three-way strategic merge patch: a value the chart
    // sets and the live object does not have is patched back.
    write: (ns, d, grace, first) =>
      first
        ? run(['create', '--field-manager', 'helm', '-f', '-'], manifest(ns, d, grace))
        : run([
            '-n',
            ns,
            'patch',
            'deployment',
            d,
            '--type',
            'strategic',
            '--field-manager',
            'helm',
            '-p',
            JSON.stringify({
              spec: { template: { spec: { terminationGracePeriodSeconds: grace ?? null } } },
            }),
          ]),
  },
];

/** Every pod template a namespace's Deployments went through, in order, from a watch. */
class TemplateHistory {
  readonly #templates = new Map<string, { hash: string; grace: number | undefined }[]>();
  readonly #informer;

  constructor(namespace: string) {
    const kc = adminKubeConfig();
    const apps = kc.makeApiClient(AppsV1Api);
    this.#informer = makeInformer<V1Deployment>(kc, `/apis/apps/v1/namespaces/${namespace}/deployments`, () =>
      apps.listNamespacedDeployment({ namespace }),
    );
    const seen = (d: V1Deployment) => {
      const name = d.metadata?.name ?? '';
      const hash = createHash('sha256').update(JSON.stringify(d.spec?.template)).digest('hex');
      const history = this.#templates.get(name) ?? [];
      if (history.at(-1)?.hash !== hash)
        history.push({ hash, grace: d.spec?.template?.spec?.terminationGracePeriodSeconds });
      this.#templates.set(name, history);
    };
    this.#informer.on('add', seen);
    this.#informer.on('update', seen);
  }

  start(): Promise<void> {
    return this.#informer.start();
  }

  stop(): Promise<void> {
    return this.#informer.stop();
  }

  /** The grace period of each template in turn. */
  graces(name: string): (number | undefined)[] {
    return (this.#templates.get(name) ?? []).map((t) => t.grace);
  }
}

/** Times the grace period went up to the policy's value: the operator's (or webhook's) raises. */
function raises(graces: (number | undefined)[]): number {
  return graces.filter((g, i) => g === WANTED && i > 0).length;
}

let operator: OperatorProcess;
const histories: TemplateHistory[] = [];

beforeAll(async () => {
  operator = await startOperatorProcess('operator-gitops.log', [
    '--resync-ms',
    '2000',
    '--rollout-check-ms',
    '500',
    '--webhook-check-ms',
    '1000',
  ]);
  const spec = {
    mode: 'Enforce',
    observedLatency: { source: 'None' },
    readinessProbe: { inject: 'Never' },
    preStop: { inject: 'Never' },
    terminationGracePeriod: { minSeconds: WANTED },
    rollout: { maxConcurrent: 10 },
  };
  await policies.apply('gitops-plain', plain.name, spec);
  await policies.apply('gitops-webhook', webhooked.name, spec);
  await installWebhookConfiguration([operator], [webhooked.name]);
});

afterAll(async () => {
  for (const history of histories) await history.stop();
  await deleteWebhookConfiguration();
  await operator?.stop();
});

/** Writes the manifest, lets the operator settle, then re-applies it SYNCS times. */
async function syncRepeatedly(namespace: string, manager: Manager): Promise<string[]> {
  const name = manager.name;
  const created = await manager.write(namespace, name, GIT_GRACE, true);
  if (created !== '') throw new Error(`${manager.name}: creating: ${created}`);
  await waitFor(`${namespace}/${name} raised to ${WANTED}`, async () => {
    const d = await readDeployment(namespace, name);
    return d.spec?.template?.spec?.terminationGracePeriodSeconds === WANTED ? d : undefined;
  });
  const errors: string[] = [];
  for (let i = 0; i < SYNCS; i++) {
    await new Promise((resolve) => setTimeout(resolve, SYNC_EVERY_MS));
    errors.push(await manager.write(namespace, name, GIT_GRACE, false));
  }
  return errors;
}

describe('without the webhook: the operator re-applies once, then holds and names the manager', () => {
  test('four managers re-applying 10 s (below the minimum 45 s) four times, 5 s apart', async () => {
    const history = new TemplateHistory(plain.name);
    histories.push(history);
    await history.start();
    const started = Date.now();
    const results = await Promise.all(MANAGERS.map((m) => syncRepeatedly(plain.name, m)));

    const status = await waitFor('the policy names every fighting manager', async () => {
      const s = await readPolicyStatus(adminKubeConfig(), 'gitops-plain');
      const held = (s.workloads ?? []).filter((w) => w.reason === 'ConflictingManager');
      return held.length === 3 ? s : undefined;
    });
    const namedWithin = (Date.now() - started) / 1000;
    // Settled: another interval brings no further template change.
    await new Promise((resolve) => setTimeout(resolve, 2 * SYNC_EVERY_MS));
    const lines: string[] = [];
    for (const [i, manager] of MANAGERS.entries()) {
      const graces = history.graces(manager.name);
      const workload = status.workloads?.find((w) => w.name === manager.name);
      lines.push(
        `${manager.name} (${manager.fieldManager}): templates ${graces.join(' -> ')}; re-apply errors ${results[i]?.filter((e) => e !== '').length}; ${workload?.verdict} ${workload?.reason}`,
      );
      if (manager.conflicts) {
        // SSA without force fails: the operator's value stands, no rollout at all.
        expect(results[i]?.every((e) => /conflict/i.test(e))).toBe(true);
        expect(graces).toEqual([GIT_GRACE, WANTED]);
        expect(workload).toMatchObject({ verdict: 'Compliant' });
        continue;
      }
      expect(results[i]?.every((e) => e === '')).toBe(true);
      // The operator's first write, and one more after the first set-back: never a third.
      expect(raises(graces), `${manager.name}: ${graces.join(' -> ')}`).toBe(2);
      expect(graces.at(-1)).toBe(GIT_GRACE);
      expect(workload).toMatchObject({ verdict: 'NonCompliant', reason: 'ConflictingManager' });
      expect(workload?.message).toContain(
        `field manager ${manager.fieldManager} set it to ${GIT_GRACE} again`,
      );
    }
    console.log(
      `managers named in status ${namedWithin.toFixed(1)} s after the first write:\n  ${lines.join('\n  ')}`,
    );
    expect(status.counts?.waitingReasons).toContainEqual({ reason: 'ConflictingManager', count: 3 });

    const events = await adminKubeConfig()
      .makeApiClient(CoreV1Api)
      .listNamespacedEvent({ namespace: plain.name, fieldSelector: 'reason=ConflictingManager' });
    expect(new Set(events.items.map((e) => e.involvedObject.name))).toEqual(
      new Set(['argo-force', 'client-side', 'helm-like']),
    );
    expect(events.items.every((e) => e.type === 'Warning')).toBe(true);
    const metrics = await operator.metrics();
    expect(metrics).toMatch(
      /gracefulshutdown_field_conflicts_total\{policy="gitops-plain",action="held"\} 3/,
    );
    expect(metrics).toMatch(
      /gracefulshutdown_field_conflicts_total\{policy="gitops-plain",action="reapplied"\} 3/,
    );
  });

  test('resumes by itself: the manager lets go of the field, or sets a compliant value', async () => {
    // Argo CD's manifest no longer sets it: its apply lets go, the apiserver's default (30 s)
    // is back, and the operator writes 45 again.
    expect(await MANAGERS[0]?.write(plain.name, 'argo-force', undefined, false)).toBe('');
    // The chart now sets a longer grace period than the policy asks: compliant as it is.
    expect(await MANAGERS[3]?.write(plain.name, 'helm-like', 120, false)).toBe('');
    const status = await waitFor('both compliant again', async () => {
      const s = await readPolicyStatus(adminKubeConfig(), 'gitops-plain');
      const ok = ['argo-force', 'helm-like'].every(
        (name) => s.workloads?.find((w) => w.name === name)?.verdict === 'Compliant',
      );
      return ok ? s : undefined;
    });
    expect(
      (await readDeployment(plain.name, 'argo-force')).spec?.template?.spec?.terminationGracePeriodSeconds,
    ).toBe(WANTED);
    expect(
      (await readDeployment(plain.name, 'helm-like')).spec?.template?.spec?.terminationGracePeriodSeconds,
    ).toBe(120);
    // The one still fighting stays held (negative control for "resumed").
    expect(status.workloads?.find((w) => w.name === 'client-side')?.reason).toBe('ConflictingManager');
  });
});

describe('with the webhook in the path: no rollout at all', () => {
  test('the value is set inside each write; a forced or merged re-apply changes nothing', async () => {
    const history = new TemplateHistory(webhooked.name);
    histories.push(history);
    await history.start();
    const results = await Promise.all(MANAGERS.map((m) => syncRepeatedly(webhooked.name, m)));
    await new Promise((resolve) => setTimeout(resolve, 2 * SYNC_EVERY_MS));
    const status = await readPolicyStatus(adminKubeConfig(), 'gitops-webhook');
    const lines: string[] = [];
    for (const [i, manager] of MANAGERS.entries()) {
      const graces = history.graces(manager.name);
      const workload = status.workloads?.find((w) => w.name === manager.name);
      const errors = results[i]?.filter((e) => e !== '') ?? [];
      lines.push(
        `${manager.name} (${manager.fieldManager}): templates ${graces.join(' -> ')}; re-apply errors ${errors.length}; ${workload?.verdict} ${workload?.reason}`,
      );
      // One template from creation on: the webhook wrote the value inside the first write.
      expect(graces, manager.name).toEqual([WANTED]);
      expect(workload?.verdict).toBe('Compliant');
      if (manager.conflicts) expect(errors).toHaveLength(SYNCS);
    }
    console.log(`with the webhook:\n  ${lines.join('\n  ')}`);
  });
});
