// `npm run bench`: the scale benchmark (scale.ts) and admission latency (admission.ts) on the
// local control plane, each figure next to its limit measured in the same run. Prints tables;
// asserts nothing. Flags shrink it for a quick look, e.g. --audit 1000 --steady-minutes 1.
import { execFileSync } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CoreV1Api } from '@kubernetes/client-node';
import { LocalCluster } from '../cluster/cluster.ts';
import { startOperator, testCluster } from '../operator/harness.ts';
import { createPolicy, repoRoot } from '../operator/install.ts';
import type { OperatorProcess } from '../operator/operator-process.ts';
import { ADMISSION_HEADER, benchAdmission } from './admission.ts';
import {
  type AuditResult,
  benchAudit,
  benchEnforce,
  benchSteady,
  cpuSeconds,
  type EnforceResult,
  type EnforceRound,
  memoryMiB,
  type SteadyResult,
} from './scale.ts';
import { markdownTable } from './table.ts';

const { values } = parseArgs({
  options: {
    enforce: { type: 'string', default: '300' },
    budget: { type: 'string', default: '100' },
    /** Rounds of the Enforce benchmark, alternating which of operator and limit goes first. */
    'enforce-rounds': { type: 'string', default: '2' },
    /**
     * Seconds from a pod's scheduling to its readiness in the Enforce rounds, one set of rounds
     * per value: 0 (at once) makes the control plane's CPU the bottleneck on a small machine;
     * real containers take seconds to start and pass a readiness probe.
     */
    'pod-ready-seconds': { type: 'string', default: '0,5' },
    audit: { type: 'string', default: '1000,5000,10000' },
    'steady-minutes': { type: 'string', default: '10' },
    'admission-rps': { type: 'string', default: '100' },
    'admission-seconds': { type: 'string', default: '10' },
    /** Write the operator's CPU profile (node --cpu-prof) into this directory when it stops. */
    profile: { type: 'string' },
    /** Keep the cluster's logs (the operator's, the apiserver's audit log) and print where. */
    'keep-logs': { type: 'boolean', default: false },
  },
});
const enforceN = Number(values.enforce);
/** Writes in flight at once: the operator's workers, and the bare client's. */
const WRITE_CONCURRENCY = 16;
const auditSizes = values.audit.split(',').filter(Boolean).map(Number);
const steadyMinutes = Number(values['steady-minutes']);

function printTable(header: string[], rows: string[][]): void {
  console.log(markdownTable(header, rows));
}

const log = (message: string) => process.stderr.write(`${new Date().toISOString()} ${message}\n`);

// kwok nodes of 110 pods each, filled to 100 at most: room for every Enforce round's pods (2 x N
// each), and for N more: a phase's new pods start while its old pods still terminate (kwok
// honours their grace period, 30 s and more, longer than a phase). kube-controller-manager at
// 20 requests/s (its default) takes in about 7 new Deployments a second: the cluster would
// still be settling 10,000 of them 25 min later.
const enforceRounds = Number(values['enforce-rounds']);
const podReadySeconds = values['pod-ready-seconds'].split(',').filter(Boolean).map(Number);
const NODES = Math.max(
  10,
  Math.ceil((2 * enforceN * enforceRounds * podReadySeconds.length + enforceN) / 100),
);
const cluster = await LocalCluster.start({
  nodes: NODES,
  progress: () => {},
  controllerManagerArgs: ['--kube-api-qps=300', '--kube-api-burst=600', '--concurrent-deployment-syncs=20'],
});
// The operator as the image runs it: compiled JavaScript (`npm run build`, into the ignored
// dist/), not the TypeScript source, whose type stripping alone costs about 30 MiB of RSS.
execFileSync(
  process.execPath,
  [join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'],
  {
    cwd: repoRoot,
    stdio: 'inherit',
  },
);
let operator: OperatorProcess | undefined;
const enforce: EnforceResult[] = [];
const audits: AuditResult[] = [];
let steady: SteadyResult | undefined;
let admissionRows: string[][] = [];
let idle = { rss: 0, cpu: 0 };
try {
  const kc = cluster.adminKubeConfig();
  operator = await startOperator(testCluster(cluster), {
    log: 'operator.log',
    entry: join(repoRoot, 'dist', 'operator', 'src', 'main.js'),
    // 16 workers: the bare client of the Enforce limit writes 16 at a time too.
    args: ['--rollout-check-ms', '500', '--workers', String(WRITE_CONCURRENCY)],
    // The inspector (on 127.0.0.1) lets the bench collect the operator's garbage before it reads
    // the heap: what the operator retains, not what it has not collected yet.
    nodeArgs: [
      '--inspect=127.0.0.1:0',
      ...(values.profile ? ['--cpu-prof', '--cpu-prof-dir', values.profile] : []),
    ],
  });
  idle = { rss: memoryMiB(operator.pid).rss, cpu: cpuSeconds(operator.pid) };

  if (enforceN > 0) {
    for (const ready of podReadySeconds) {
      log(`enforce: ${enforceN} Deployments, budget ${values.budget}, pods ready after ${ready} s`);
      enforce.push(
        await benchEnforce(kc, operator, enforceN, Number(values.budget), enforceRounds, ready, (round) =>
          log(
            `enforce round (${round.first} first): operator ${round.operatorSeconds.toFixed(1)} s, limit ${round.limitSeconds.toFixed(1)} s`,
          ),
        ),
      );
    }
  }
  if (auditSizes.length > 0) {
    log(`audit: ${auditSizes.join(', ')} Deployments`);
    await benchAudit(kc, operator, auditSizes, (result) => {
      log(`audit ${result.n}: status in ${result.statusSeconds.toFixed(1)} s`);
      audits.push(result);
    });
    if (steadyMinutes > 0) {
      log(`steady state: ${steadyMinutes} min`);
      steady = await benchSteady(operator, cluster.auditLogPath, auditSizes.at(-1) ?? 0, steadyMinutes);
    }
  }
  if (Number(values['admission-rps']) > 0) {
    log('admission');
    const namespace = 'scale-admission';
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
    // Every admission is a mutation: an Enforce policy selects the namespace.
    await createPolicy(kc, namespace, {
      mode: 'Enforce',
      namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': namespace } },
      observedLatency: { source: 'None' },
    });
    admissionRows = await benchAdmission({
      kubeConfig: kc,
      operator,
      namespace,
      rps: Number(values['admission-rps']),
      seconds: Number(values['admission-seconds']),
    });
  }
} finally {
  await operator?.stop();
  const logs = await cluster.stop({ keepLogs: values['keep-logs'] });
  if (logs) log(`logs kept in ${logs}`);
}

console.log(
  `\nKubernetes ${cluster.kubernetesVersion} (${NODES} kwok nodes), ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ${new Date().toISOString().slice(0, 10)}`,
);
console.log(`operator idle: RSS ${idle.rss.toFixed(0)} MiB\n`);
if (enforce.length > 0) {
  const first = enforce[0] as EnforceResult;
  const peak = Math.max(...enforce.flatMap((e) => e.rounds.map((r) => r.limitPeak)));
  console.log(
    `1. Enforce: ${first.n} Deployments (1 replica), rollout.maxConcurrent ${first.budget}, ${enforceRounds} rounds (which goes first alternates) per pod start-up time (kwok: scheduled to ready); converged: every Deployment rolled out with the settings and settled, told by a watch in both phases; the limit is a bare client sending the operator's own server-side apply, keeping ${first.budget} rollouts in flight, the next started on the watch event that ends one (peak ${peak}); both write ${WRITE_CONCURRENCY} at a time (operator --workers ${WRITE_CONCURRENCY}); status: until the policy's status says so; operator CPU: its CPU seconds (/proc) until convergence, and while the limit's phase ran (it watches those rollouts too); machine CPU: every process's CPU seconds (/proc/stat) until convergence in each phase, the apiserver's and controllers' work for it included\n`,
  );
  const row = (
    ready: number,
    round: string,
    first: string,
    f: (g: (r: EnforceRound) => number) => number,
  ) => [
    String(ready),
    round,
    first,
    f((r) => r.operatorSeconds).toFixed(1),
    f((r) => r.limitSeconds).toFixed(1),
    (f((r) => r.operatorSeconds) / f((r) => r.limitSeconds)).toFixed(3),
    f((r) => r.statusSeconds).toFixed(1),
    f((r) => r.writesPerDeployment).toFixed(2),
    f((r) => r.operatorCpuSeconds).toFixed(2),
    f((r) => r.operatorCpuInLimitSeconds).toFixed(2),
    f((r) => r.reconcilesPerDeployment).toFixed(1),
    `${f((r) => r.machineCpuSeconds).toFixed(1)} / ${f((r) => r.limitMachineCpuSeconds).toFixed(1)}`,
  ];
  printTable(
    [
      'pod ready s',
      'round',
      'first',
      'operator converge s',
      'limit s',
      'operator / limit',
      'status s',
      'writes/deploy',
      'operator CPU s',
      'its CPU s in the limit phase',
      'reconciles/deploy',
      'machine CPU s: operator / limit phase',
    ],
    enforce.flatMap((e) => {
      // The total row: means of the rounds, so its ratio is that of the sums.
      const mean = (g: (r: EnforceRound) => number) =>
        e.rounds.reduce((total, r) => total + g(r), 0) / e.rounds.length;
      return [
        ...e.rounds.map((r, i) => row(e.podReadySeconds, String(i + 1), r.first, (g) => g(r))),
        row(e.podReadySeconds, 'all', '', mean),
      ];
    }),
  );
}
if (audits.length > 0) {
  console.log(
    "\n2. Audit: Deployments with 0 replicas; policy creation to a complete status vs one LIST of all Deployments. Retained heap: the operator's heap after a full GC (through its inspector); per Deployment: its growth since before the first tier over the Deployments added; cache heap: a cache built in the bench process as the operator builds it, between two full GCs\n",
  );
  printTable(
    [
      'deployments',
      'status s',
      'LIST s',
      'status / LIST',
      'operator CPU s',
      'peak RSS MiB',
      'retained heap MiB',
      'retained B/deploy',
      'cache heap B/deploy',
      'JSON B/deploy',
    ],
    audits.map((a) => [
      String(a.n),
      a.statusSeconds.toFixed(2),
      a.listSeconds.toFixed(2),
      (a.statusSeconds / a.listSeconds).toFixed(2),
      a.cpuSeconds.toFixed(2),
      a.peakRssMiB.toFixed(0),
      (a.retainedHeapBytes / 2 ** 20).toFixed(0),
      a.heapBytesPerDeployment.toFixed(0),
      a.cacheBytesPerDeployment.toFixed(0),
      a.jsonBytesPerDeployment.toFixed(0),
    ]),
  );
}
if (steady) {
  console.log(
    `\n3. Steady state: ${steady.deployments} Deployments cached, one Audit policy, ${steady.minutes} min untouched; writes and requests from the apiserver's audit log\n`,
  );
  const deploymentWrites = steady.writes.deployments ?? 0;
  const statusWrites = steady.writes['gracefulshutdownpolicies/status'] ?? 0;
  const others = Object.entries(steady.writes)
    .filter(([resource]) => resource !== 'deployments' && resource !== 'gracefulshutdownpolicies/status')
    .map(([resource, count]) => `${resource} ${count}`)
    .join(', ');
  printTable(
    [
      'deployments',
      'minutes',
      'Deployment writes',
      'status writes',
      'other writes',
      'CPU % of a core',
      'requests/min',
      'RSS MiB',
      'event loop p99 / longest ms',
    ],
    [
      [
        String(steady.deployments),
        String(steady.minutes),
        String(deploymentWrites),
        String(statusWrites),
        others || '0',
        steady.cpuPercent.toFixed(2),
        steady.requestsPerMinute.toFixed(1),
        steady.rssMiB.toFixed(0),
        `${steady.eventLoop.p99.toFixed(1)} / ${steady.eventLoop.max.toFixed(0)}`,
      ],
    ],
  );
}
if (admissionRows.length > 0) {
  console.log(
    '\n4. Admission: server-side dry-run creates through the apiserver, open loop; the limit first\n',
  );
  printTable(ADMISSION_HEADER, admissionRows);
}
