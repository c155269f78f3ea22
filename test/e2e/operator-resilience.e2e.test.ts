// Failures the operator must ride out: its leader killed (-9), the apiserver restarted, a policy
// that fails the operator's own validation. This file starts a control plane of its own, because
// it restarts the apiserver and replaces the CRD.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import {
  AppsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type V1Deployment,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, beforeEach, expect, test } from 'vitest';
import { APPLIED_ANNOTATION } from '../../operator/src/api/annotations.ts';
import { GROUP, PLURAL, VERSION } from '../../operator/src/api/policy.ts';
import { isRolling } from '../../operator/src/policy/budget.ts';
import { LocalCluster } from '../cluster/cluster.ts';
import { sampleDeployment } from '../operator/fixtures.ts';
import {
  createPolicy,
  installOperatorPrerequisites,
  OPERATOR_NAMESPACE,
  OPERATOR_SERVICE_ACCOUNT,
} from '../operator/install.ts';
import { OperatorProcess } from '../operator/operator-process.ts';
import { waitFor } from './support.ts';

let cluster: LocalCluster;
let dir: string;
const operators: OperatorProcess[] = [];
const namespace = 'resilience';

beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 2, progress: () => {} });
  // Beside the control plane's logs, removed with the cluster.
  dir = join(cluster.workDir, 'logs');
  await installOperatorPrerequisites(cluster.binaries.kubectl, cluster.kubeconfigPath);
  await kubectl(['create', 'namespace', namespace]);
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

function kubectl(args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cluster.binaries.kubectl,
      ['--kubeconfig', cluster.kubeconfigPath, ...args],
      (err, stdout, stderr) =>
        err ? reject(new Error(`kubectl ${args.join(' ')}: ${stderr}`)) : resolve(stdout),
    );
    child.stdin?.end(input ?? '');
  });
}

async function startOperator(identity: string, args: string[] = []): Promise<OperatorProcess> {
  const kubeconfig = await cluster.serviceAccountKubeconfig(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT);
  const operator = await OperatorProcess.start({
    kubeconfig,
    identity,
    args,
    logPath: join(dir, `${identity}.log`),
  });
  operators.push(operator);
  await operator.waitReady();
  return operator;
}

async function createDeployment(name: string): Promise<void> {
  await apps().createNamespacedDeployment({ namespace, body: sampleDeployment(name) });
}

async function enforced(name: string): Promise<V1Deployment | undefined> {
  const d = await apps().readNamespacedDeployment({ namespace, name });
  return d.metadata?.annotations?.[APPLIED_ANNOTATION] && !isRolling(d) ? d : undefined;
}

async function leaseHolder(): Promise<string | undefined> {
  const lease = await cluster
    .adminKubeConfig()
    .makeApiClient(CoordinationV1Api)
    .readNamespacedLease({ namespace: OPERATOR_NAMESPACE, name: 'graceful-shutdown-operator' });
  return lease.spec?.holderIdentity ?? undefined;
}

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
  const crd = JSON.parse(await kubectl(['get', 'crd', `${PLURAL}.${GROUP}`, '-o', 'json']));
  const spec = crd.spec.versions[0].schema.openAPIV3Schema.properties.spec;
  delete spec['x-kubernetes-validations'];
  delete crd.metadata.managedFields;
  await kubectl(['replace', '-f', '-'], JSON.stringify(crd));
  await kubectl(['create', 'namespace', 'invalid-policy']);
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
