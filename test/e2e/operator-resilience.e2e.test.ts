// Failures the operator must ride out: its leader killed (-9), the apiserver restarted, a policy
// that fails the operator's own validation. This file starts a control plane of its own, because
// it restarts the apiserver and replaces the CRD.
import { readFileSync } from 'node:fs';
import { AppsV1Api, CoreV1Api, CustomObjectsApi, type V1Deployment } from '@kubernetes/client-node';
import { afterAll, beforeAll, beforeEach, expect, test } from 'vitest';
import { APPLIED_ANNOTATION } from '../../operator/src/api/annotations.ts';
import { GROUP, PLURAL, VERSION } from '../../operator/src/api/policy.ts';
import { LocalCluster } from '../cluster/cluster.ts';
import {
  createPolicy,
  leaseHolder as harnessLeaseHolder,
  startOperator as harnessStartOperator,
  installOperatorPrerequisites,
  kubectlOk,
  type OperatorProcess,
  rolledOut,
  sampleDeployment,
  type TestCluster,
  testCluster,
  waitFor,
} from '../operator/harness.ts';

let cluster: LocalCluster;
/** The same cluster as the harness's helpers take it. */
let kube: TestCluster;
const operators: OperatorProcess[] = [];
const namespace = 'resilience';

beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 2, progress: () => {} });
  kube = testCluster(cluster);
  await installOperatorPrerequisites(kube.kubectl, kube.kubeconfig);
  await kubectlOk(kube, ['create', 'namespace', namespace]);
  await createPolicy(cluster.adminKubeConfig(), 'resilience', {
    mode: 'Enforce',
    namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': namespace } },
    rollout: { maxConcurrent: 5 },
  });
});

let failed = false;
beforeEach(({ onTestFailed }) => {
  onTestFailed(() => {
    failed = true;
  });
});

afterAll(async () => {
  for (const operator of operators) await operator.kill();
  const logs = await cluster?.stop({ keepLogs: failed });
  if (logs)
    process.stderr.write(`resilience tests failed: control-plane and operator logs kept in ${logs}\n`);
});

const apps = () => cluster.adminKubeConfig().makeApiClient(AppsV1Api);
const custom = () => cluster.adminKubeConfig().makeApiClient(CustomObjectsApi);

/** A replica under the operator's ServiceAccount, its log named after its identity; ready. */
async function startOperator(identity: string, args: string[] = []): Promise<OperatorProcess> {
  const operator = await harnessStartOperator(kube, { log: `${identity}.log`, identity, args });
  operators.push(operator);
  return operator;
}

async function createDeployment(name: string): Promise<void> {
  await apps().createNamespacedDeployment({ namespace, body: sampleDeployment(name) });
}

/** Written by the operator (its record is there) and rolled out. */
async function enforced(name: string): Promise<V1Deployment | undefined> {
  const d = await rolledOut(kube, namespace, name);
  return d?.metadata?.annotations?.[APPLIED_ANNOTATION] ? d : undefined;
}

const leaseHolder = () => harnessLeaseHolder(kube);

test('two replicas: kill -9 the leader, the other takes over and reconciles', async () => {
  const first = await startOperator('replica-a');
  await waitFor('replica-a leads', async () => (await leaseHolder()) === 'replica-a');
  const second = await startOperator('replica-b');
  await createDeployment('before-failover');
  await waitFor('enforced by the leader', () => enforced('before-failover'));
  // Only the leader reconciles: the follower has written nothing.
  expect(await second.sample('gracefulshutdown_deployment_writes_total')).toBe(0);

  await first.kill();
  const killedAt = Date.now();
  await createDeployment('after-failover');
  await waitFor('replica-b leads', async () => (await leaseHolder()) === 'replica-b', { timeoutMs: 60_000 });
  await waitFor('enforced by the new leader', () => enforced('after-failover'), { timeoutMs: 60_000 });
  console.log(
    `failover: new leader acted ${((Date.now() - killedAt) / 1000).toFixed(1)} s after kill -9 (lease 15 s, retry 2 s)`,
  );
  expect(await second.sample('gracefulshutdown_deployment_writes_total')).toBeGreaterThanOrEqual(1);
});

/** Log lines of a replica after `since` that report a write (Deployment or policy status). */
function writesLoggedAfter(operator: OperatorProcess, since: number): string[] {
  const writes = new Set([
    'applied shutdown settings',
    'recorded ownership',
    'released Deployment',
    'status updated',
  ]);
  return readFileSync(operator.logPath, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { time: string; msg: string })
    .filter((entry) => Date.parse(entry.time) > since && writes.has(entry.msg))
    .map((entry) => `${entry.time} ${entry.msg}`);
}

test('the leader frozen past its lease and resumed: the new leader works, the old one writes nothing and the status does not flap', async () => {
  const holder = await leaseHolder();
  const old = operators.find((o) => o.identity === holder && !o.exited);
  if (!old) throw new Error(`no running leader (lease held by ${holder})`);
  const next = await startOperator('replica-c');
  await createDeployment('before-freeze');
  await waitFor('enforced by the old leader', () => enforced('before-freeze'));

  process.kill(old.pid, 'SIGSTOP');
  const frozenAt = Date.now();
  try {
    await waitFor('replica-c leads', async () => (await leaseHolder()) === 'replica-c', {
      timeoutMs: 60_000,
    });
    await createDeployment('during-freeze');
    await waitFor('enforced by the new leader', () => enforced('during-freeze'), { timeoutMs: 60_000 });
  } finally {
    process.kill(old.pid, 'SIGCONT');
  }
  const resumedAt = Date.now();
  console.log(`frozen ${((resumedAt - frozenAt) / 1000).toFixed(1)} s; replica-c took over meanwhile`);

  // Watch the status for a while: one writer only, so it settles and stays.
  const seen: string[] = [];
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const policy = (await custom().getClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      name: 'resilience',
    })) as { status?: { counts?: unknown } };
    const counts = JSON.stringify(policy.status?.counts);
    if (seen.at(-1) !== counts) seen.push(counts);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  // No A -> B -> A: each state at most once.
  expect(new Set(seen).size).toBe(seen.length);
  expect(writesLoggedAfter(old, resumedAt)).toEqual([]);
  expect(await leaseHolder()).toBe('replica-c');
  // The resumed replica found it no longer leads and exited to campaign afresh.
  await waitFor('the old leader exits', async () => old.exited);
  expect(await next.sample('gracefulshutdown_deployment_writes_total')).toBeGreaterThanOrEqual(1);
});

test('kube-apiserver restarted mid-run: the operator recovers without a restart', async () => {
  // A leader that cannot renew its lease for the renew deadline (10 s) steps down and exits 1,
  // as controller-runtime's does, and its pod restarts. What must survive the outage are the
  // watches and caches: a single replica without leader election shows that.
  for (const o of operators) await o.stop();
  // A clean stop (SIGTERM) releases the Lease: the next replica need not wait for it to expire.
  expect(await leaseHolder()).toBeFalsy();
  const operator = await startOperator('single', ['--leader-elect', 'false']);
  await createDeployment('before-restart');
  await waitFor('enforced before the restart', () => enforced('before-restart'));
  const pid = operator.pid;
  await cluster.restartApiserver(3_000);
  // Made right after the apiserver is back, while the operator's watches are still failing
  // and backing off: it must be reconciled once they reconnect.
  await createDeployment('after-restart');
  await waitFor('enforced after the apiserver restart', () => enforced('after-restart'), {
    timeoutMs: 90_000,
  });
  expect(operator.exited).toBe(false);
  expect(operator.pid).toBe(pid);
});

test('a policy that fails the operator-side validation gets a condition naming the field and touches nothing', async () => {
  // An older or hand-edited CRD may let through what the operator refuses: drop the CEL rules.
  const crd = JSON.parse(await kubectlOk(kube, ['get', 'crd', `${PLURAL}.${GROUP}`, '-o', 'json']));
  const spec = crd.spec.versions[0].schema.openAPIV3Schema.properties.spec;
  delete spec['x-kubernetes-validations'];
  delete crd.metadata.managedFields;
  await kubectlOk(kube, ['replace', '-f', '-'], { input: JSON.stringify(crd) });
  await kubectlOk(kube, ['create', 'namespace', 'invalid-policy']);
  await apps().createNamespacedDeployment({
    namespace: 'invalid-policy',
    body: sampleDeployment('untouched'),
  });
  await createPolicy(cluster.adminKubeConfig(), 'too-long-prestop', {
    mode: 'Enforce',
    priority: 1000,
    namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'invalid-policy' } },
    preStop: { seconds: 200 },
    terminationGracePeriod: { maxSeconds: 100 },
  });
  const accepted = await waitFor('Accepted=False', async () => {
    const policy = (await custom().getClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      name: 'too-long-prestop',
    })) as { status?: { conditions?: { type: string; status: string; reason: string; message: string }[] } };
    return policy.status?.conditions?.find((c) => c.type === 'Accepted' && c.status === 'False');
  });
  expect(accepted.reason).toBe('InvalidSpec');
  expect(accepted.message).toContain('spec.preStop.seconds');
  // `kubectl describe gsp` shows why: a Warning Event on the (cluster-scoped) policy.
  const event = await waitFor('InvalidSpec event', async () => {
    const list = await cluster
      .adminKubeConfig()
      .makeApiClient(CoreV1Api)
      .listEventForAllNamespaces({ fieldSelector: 'involvedObject.name=too-long-prestop' });
    return list.items.find((e) => e.reason === 'InvalidSpec');
  });
  expect(event.type).toBe('Warning');
  expect(event.message).toContain('spec.preStop.seconds');
  const operator = operators.find((o) => !o.exited);
  expect(await operator?.sample('gracefulshutdown_policy_accepted', { policy: 'too-long-prestop' })).toBe(0);
  const untouched = await apps().readNamespacedDeployment({ namespace: 'invalid-policy', name: 'untouched' });
  expect(untouched.metadata?.generation).toBe(1);
  expect(untouched.metadata?.annotations?.[APPLIED_ANNOTATION]).toBeUndefined();
});
