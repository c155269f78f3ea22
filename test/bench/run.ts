// `npm run bench`: how fast the operator converges N Deployments on the local control plane,
// how many writes each costs, and its memory. Prints a table; asserts nothing.
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { AppsV1Api, CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
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
import { ADMISSION_HEADER, benchAdmission } from './admission.ts';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '20,100' },
    'max-concurrent': { type: 'string', default: '10' },
    'admission-rps': { type: 'string', default: '100' },
    'admission-seconds': { type: 'string', default: '10' },
  },
});
const sizes = values.sizes.split(',').map(Number);
const maxConcurrent = Number(values['max-concurrent']);

function rssMiB(pid: number): number {
  const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  return kb / 1024;
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error('bench: timed out');
    await new Promise((r) => setTimeout(r, 250));
  }
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padStart(widths[i] ?? 0)).join(' | ')} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const row of rows) console.log(line(row));
}

const cluster = await LocalCluster.start({ nodes: 3, progress: () => {} });
let operator: OperatorProcess | undefined;
const rows: string[][] = [];
try {
  const kc = cluster.adminKubeConfig();
  const apps = kc.makeApiClient(AppsV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  await installOperatorPrerequisites(cluster.binaries.kubectl, cluster.kubeconfigPath);
  operator = await OperatorProcess.start({
    kubeconfig: await cluster.serviceAccountKubeconfig(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT),
    logPath: join(cluster.workDir, 'logs', 'operator.log'),
    args: ['--rollout-check-ms', '500'],
  });
  await operator.waitReady();
  const idleRss = rssMiB(operator.pid);

  for (const n of sizes) {
    const ns = `bench-${n}`;
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
    for (let i = 0; i < n; i++) {
      await apps.createNamespacedDeployment({ namespace: ns, body: sampleDeployment(`svc-${i}`) });
    }
    await waitUntil(async () => {
      const list = await apps.listNamespacedDeployment({ namespace: ns });
      return list.items.length === n && list.items.every((d) => !isRolling(d));
    }, 300_000);

    const writesBefore = await operator.sample('gracefulshutdown_deployment_writes_total');
    const started = Date.now();
    await createPolicy(kc, ns, {
      mode: 'Enforce',
      namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns } },
      // kwok pods have no address to ask: verifying each new probe would only wait for a timeout.
      readinessProbe: { verification: 'Trust' },
      rollout: { maxConcurrent },
    });
    await waitUntil(async () => {
      const policy = (await custom.getClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: PLURAL,
        name: ns,
      })) as {
        status?: { counts?: { compliant: number } };
      };
      if (policy.status?.counts?.compliant !== n) return false;
      const list = await apps.listNamespacedDeployment({ namespace: ns });
      return list.items.every((d) => !isRolling(d));
    }, 600_000);
    const seconds = (Date.now() - started) / 1000;
    const writes = (await operator.sample('gracefulshutdown_deployment_writes_total')) - writesBefore;
    rows.push([
      String(n),
      String(maxConcurrent),
      seconds.toFixed(1),
      (writes / n).toFixed(2),
      rssMiB(operator.pid).toFixed(0),
    ]);
  }

  const admissionRows = await benchAdmission({
    kubeConfig: kc,
    operator,
    namespace: `bench-${sizes.at(-1)}`,
    rps: Number(values['admission-rps']),
    seconds: Number(values['admission-seconds']),
  });

  console.log(
    `\nKubernetes ${cluster.kubernetesVersion} (kwok), ${cpus().length} cores, ${new Date().toISOString().slice(0, 10)}`,
  );
  console.log(`operator idle RSS ${idleRss.toFixed(0)} MiB; cumulative Deployments in cache per row\n`);
  printTable(['deployments', 'maxConcurrent', 'converge s', 'writes/deploy', 'operator RSS MiB'], rows);
  console.log('\nserver-side dry-run creates through the apiserver, open loop; the limit first\n');
  printTable(ADMISSION_HEADER, admissionRows);
} finally {
  await operator?.stop();
  await cluster.stop();
}
