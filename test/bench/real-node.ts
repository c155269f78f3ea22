// `npm run bench:node`: what the real node costs and what it shows. Start and stop times of the
// cluster with and without the real node (the same run gives the baseline), the whole cluster's
// memory with the operator and demo-service running in it, and a rolling restart of demo-service
// under load with the policy's settings next to the same rollout without a preStop. Prints
// tables; asserts nothing.
import { readdir, readFile } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { EXCLUDE_ANNOTATION } from '../../operator/src/api/annotations.ts';
import { LocalCluster } from '../cluster/cluster.ts';
import { buildImages } from '../cluster/images.ts';
import { buildNode } from '../cluster/node/build.ts';
import { pidsOfBinariesIn } from '../cluster/node/host.ts';
import { realNodePlacement } from '../cluster/node/node.ts';
import {
  clusterIp,
  createNoPreStopCopy,
  type KubeTarget,
  loadDuringRollout,
  waitRolledOut,
} from '../drain/kube-rollout.ts';
import type { UrlLoadReport } from '../drain/url-load.ts';
import {
  DEMO_SERVICE,
  installDemoService,
  installOperatorInCluster,
  testCluster,
  waitFor,
} from '../operator/harness.ts';
import { markdownTable, median } from './table.ts';

const { values } = parseArgs({ options: { starts: { type: 'string', default: '3' } } });
const starts = Number(values.starts);
if (!Number.isInteger(starts) || starts < 1 || starts > 10) throw new Error('--starts: want 1..10');

const quiet = () => {};
const seconds = (ms: number) => (ms / 1000).toFixed(1);

const table = (header: string[], rows: string[][]) => markdownTable(header, rows, 'left');

async function rssKiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

/** Every process in the kubepods cgroup tree (containers and pause) of one hierarchy. */
async function podPids(dir = '/sys/fs/cgroup/memory/kubepods'): Promise<number[]> {
  const pids = (await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => ''))
    .split('\n')
    .filter(Boolean)
    .map(Number);
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => []))
    if (e.isDirectory()) pids.push(...(await podPids(join(dir, e.name))));
  return pids;
}

/** RSS summed over the cluster's processes: components, shims, pods. Shared pages count twice. */
async function clusterRss(cluster: LocalCluster, nodeBinDir: string) {
  const groups = {
    'control plane and kwok': cluster.pids.filter((p) => !cluster.node?.pids.includes(p)),
    'containerd, kubelet, kube-proxy, shims': [
      ...new Set([...(cluster.node?.pids ?? []), ...(await pidsOfBinariesIn(nodeBinDir))]),
    ],
    'pods (operator x2, demo-service x2, control x2)': await podPids(),
  };
  const out: Record<string, number> = {};
  for (const [name, pids] of Object.entries(groups)) {
    let kib = 0;
    for (const pid of pids) kib += await rssKiB(pid);
    out[name] = kib / 1024;
  }
  return out;
}

// 1. Start and stop, with and without the real node, with binaries and images cached first.
const nodeBinaries = await buildNode({ progress: quiet });
await buildImages({ pauseBinary: nodeBinaries.pause, progress: quiet });
const timings: Record<'kwok only' | 'with the real node', { start: number[]; stop: number[] }> = {
  'kwok only': { start: [], stop: [] },
  'with the real node': { start: [], stop: [] },
};
for (let i = 0; i < starts; i++) {
  for (const [label, realNode] of [
    ['kwok only', false],
    ['with the real node', true],
  ] as const) {
    const t0 = Date.now();
    const cluster = await LocalCluster.start({ nodes: 3, realNode, progress: quiet });
    const t1 = Date.now();
    await cluster.stop();
    timings[label].start.push(t1 - t0);
    timings[label].stop.push(Date.now() - t1);
  }
}

// 2. One cluster with the operator and demo-service in it: memory, and a rollout under load.
const nodeBinDir = nodeBinaries.dir;
const cluster = await LocalCluster.start({ nodes: 3, realNode: true, progress: quiet });
let memory: Record<string, number> = {};
let peak: Record<string, number> = {};
const loads: [string, UrlLoadReport][] = [];
try {
  const kube = testCluster(cluster);
  const images = cluster.images;
  if (!images) throw new Error('no images');
  const install = { cluster: kube, placement: realNodePlacement };
  await installOperatorInCluster({
    ...install,
    dir: join(cluster.workDir, 'overlay-operator'),
    image: images.operator.ref,
  });
  await installDemoService({
    ...install,
    dir: join(cluster.workDir, 'overlay-demo'),
    image: images.demoService.ref,
  });
  const target: KubeTarget = { cluster: kube, ...DEMO_SERVICE };
  await waitRolledOut(target);
  await createNoPreStopCopy(target, 'demo-no-prestop', EXCLUDE_ANNOTATION);
  const url = `http://${await clusterIp(target)}/work?ms=1`;
  await waitFor('demo-service to answer', () => fetch(url).then((r) => r.ok));
  memory = await clusterRss(cluster, nodeBinDir);
  peak = { ...memory };
  const sampler = setInterval(async () => {
    const now = await clusterRss(cluster, nodeBinDir);
    for (const [k, v] of Object.entries(now)) peak[k] = Math.max(peak[k] ?? 0, v);
  }, 500);
  try {
    loads.push(['demo-service, policy settings', await loadDuringRollout(target, { rps: 250 })]);
    loads.push([
      'demo-no-prestop (control)',
      await loadDuringRollout({ ...target, name: 'demo-no-prestop' }, { rps: 250 }),
    ]);
  } finally {
    clearInterval(sampler);
  }
} finally {
  await cluster.stop();
}

const mib = (x: number | undefined) => (x ?? 0).toFixed(0);
console.log(
  `\nKubernetes ${cluster.kubernetesVersion}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, load ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' / ')}, ${new Date().toISOString().slice(0, 10)}\n`,
);
console.log(`Start to usable and stop, ${starts} runs each, median (max); binaries and images cached\n`);
console.log(
  table(
    ['cluster (3 kwok nodes)', 'start s', 'stop s'],
    Object.entries(timings).map(([label, t]) => [
      label,
      `${seconds(median(t.start))} (${seconds(Math.max(...t.start))})`,
      `${seconds(median(t.stop))} (${seconds(Math.max(...t.stop))})`,
    ]),
  ),
);
console.log(
  '\nMemory (RSS summed per process; shared pages count in each), idle and peak during the rollouts\n',
);
const groups = Object.keys(memory);
console.log(
  table(
    ['processes', 'idle MiB', 'peak MiB'],
    [
      ...groups.map((g) => [g, mib(memory[g]), mib(peak[g])]),
      [
        'whole cluster',
        mib(groups.reduce((s, g) => s + (memory[g] ?? 0), 0)),
        mib(groups.reduce((s, g) => s + (peak[g] ?? 0), 0)),
      ],
    ],
  ),
);
console.log(
  '\nRolling restart of 2 replicas under 250 req/s through the Service ClusterIP (keep-alive, hints ignored)\n',
);
console.log(
  table(
    ['deployment', 'sent', 'lost', 'lost by kind', 'p99 ms', 'load covered the rollout'],
    loads.map(([name, r]) => [
      name,
      String(r.sent),
      String(r.lost),
      Object.entries(r.lostByKind)
        .map(([k, n]) => `${k}: ${n}`)
        .join(', ') || '-',
      r.p99Ms?.toFixed(0) ?? '-',
      r.stoppedEarly ? `no: ${r.stoppedEarly}` : 'yes',
    ]),
  ),
);
