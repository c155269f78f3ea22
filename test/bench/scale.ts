// The scale benchmark of `npm run bench` (issue 13): each figure next to its limit, measured in
// the same run on the same cluster. Asserts nothing; prints tables.
//   enforce: N Deployments (1 replica, kwok pods) converged by the operator under
//            rollout.maxConcurrent vs a bare client keeping the same budget as a sliding window.
//   audit:   N Deployments (0 replicas) added in tiers; time from policy creation to a complete
//            status vs one LIST of all Deployments; operator CPU, peak RSS, heap per Deployment.
//   steady:  the largest tier left alone: writes (audit log), CPU, requests per minute.
import { readFileSync } from 'node:fs';
import {
  AppsV1Api,
  CoreV1Api,
  type KubeConfig,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  type V1Deployment,
  VersionApi,
} from '@kubernetes/client-node';
import { FIELD_MANAGER } from '../../operator/src/api/annotations.ts';
import { parsePolicySpec } from '../../operator/src/api/policy.ts';
import { DEPLOYMENT_CONTROLLER } from '../../operator/src/controllers/deployment-controller.ts';
import { deploymentCacheTransform } from '../../operator/src/kube/informer.ts';
import { isRolling } from '../../operator/src/policy/budget.ts';
import { clusterFacts } from '../../operator/src/policy/desired.ts';
import { deploymentKey } from '../../operator/src/policy/match.ts';
import { type ApplyConfiguration, applyConfiguration } from '../../operator/src/policy/ownership.ts';
import { planWorkload } from '../../operator/src/policy/plan.ts';
import type { ClusterFacts } from '../../operator/src/policy/types.ts';
import { waitFor } from '../cluster/wait.ts';
import { sampleDeployment } from '../operator/fixtures.ts';
import { createPolicy, deletePolicy, readPolicyStatus } from '../operator/install.ts';
import type { OperatorProcess } from '../operator/operator-process.ts';

/** The operator's user as the apiserver's audit log names it. */
const OPERATOR_USER = 'system:serviceaccount:graceful-shutdown-system:graceful-shutdown-operator';

/** CPU seconds (user + system) the process has used; /proc/<pid>/stat fields 14 and 15. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * CPU seconds the whole machine has used (every process, user + system + interrupts; not idle or
 * I/O wait): /proc/stat's first line, in USER_HZ (100 on Linux). What a phase costs the cluster,
 * the work it makes the apiserver, etcd and the controllers do included.
 */
export function machineCpuSeconds(): number {
  // cpu user nice system idle iowait irq softirq steal ...
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '')
    .split(/\s+/)
    .slice(1)
    .map(Number);
  return [0, 1, 2, 5, 6, 7].reduce((sum, i) => sum + (fields[i] ?? 0), 0) / 100;
}

/** Resident and peak resident memory in MiB. */
export function memoryMiB(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

/** Runs `task` over `items` with at most `limit` in flight. */
async function pool<T>(items: T[], limit: number, task: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await task(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** kwok's pod-ready stage (test/cluster/kwok-stages/pod-ready.yaml) waits this long when a pod asks. */
const POD_READY_DELAY = 'pod-ready.stage.kwok.x-k8s.io/delay';

async function createDeployments(
  kc: KubeConfig,
  namespace: string,
  names: string[],
  replicas: number,
  podReadySeconds = 0,
): Promise<void> {
  const apps = kc.makeApiClient(AppsV1Api);
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
  const podAnnotations = podReadySeconds > 0 ? { [POD_READY_DELAY]: `${podReadySeconds}s` } : undefined;
  await pool(names, 16, (name) =>
    apps.createNamespacedDeployment({
      namespace,
      body: sampleDeployment(name, { replicas, ...(podAnnotations ? { podAnnotations } : {}) }),
    }),
  );
}

async function allSettled(kc: KubeConfig, namespace: string, n: number): Promise<boolean> {
  const list = await kc.makeApiClient(AppsV1Api).listNamespacedDeployment({ namespace });
  return list.items.length === n && list.items.every((d) => !isRolling(d));
}

/**
 * Exactly one running pod per Deployment, none terminating. Terminating pods (kwok honours their
 * grace period, 30 s here) still count against the nodes' pod capacity: a phase that starts
 * while the previous one's old pods linger finds the nodes full and its pods unschedulable.
 */
async function podsSettled(kc: KubeConfig, namespace: string, n: number): Promise<boolean> {
  const pods = await kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace });
  return pods.items.length === n && pods.items.every((p) => p.metadata?.deletionTimestamp === undefined);
}

const names = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

/** One round of the Enforce benchmark: the operator and the limit on the same cluster. */
export interface EnforceRound {
  /** Which ran first: rounds alternate, so that neither always meets the other's leftovers. */
  first: 'limit' | 'operator';
  /** Policy creation to every Deployment rolled out with the settings and settled. */
  operatorSeconds: number;
  /** Policy creation to the policy's status saying so (the status waits a debounce after the last change). */
  statusSeconds: number;
  /** The bare client's first write to every Deployment rolled out and settled. */
  limitSeconds: number;
  writesPerDeployment: number;
  /** The most rollouts the bare client had in flight at once (never above the budget). */
  limitPeak: number;
  /** The operator's CPU seconds until convergence in its phase, and while the limit's ran (watching it). */
  operatorCpuSeconds: number;
  operatorCpuInLimitSeconds: number;
  /** The deployment controller's reconciles until convergence, per Deployment. */
  reconcilesPerDeployment: number;
  /** The machine's CPU seconds (every process) until convergence, in each phase. */
  machineCpuSeconds: number;
  limitMachineCpuSeconds: number;
}

export interface EnforceResult {
  n: number;
  budget: number;
  /** How long a pod takes from scheduled to ready (kwok; 0: at once). */
  podReadySeconds: number;
  rounds: EnforceRound[];
}

/** The Enforce policy of the benchmark: no latency source, new probes trusted (kwok pods have no address). */
function enforcePolicySpec(namespace: string, budget: number) {
  return {
    mode: 'Enforce',
    namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': namespace } },
    observedLatency: { source: 'None' },
    readinessProbe: { verification: 'Trust' },
    rollout: { maxConcurrent: budget },
  };
}

/** The field manager of the bare client: not the operator's, so the operator never adopts what it wrote. */
const LIMIT_FIELD_MANAGER = 'scale-bench-limit';

/**
 * The request the operator sends for `deployment` under `spec`, planned by the operator's own
 * code: the same probe, preStop, grace period and template annotations. Without the operator's
 * record annotation, which would make the operator take the Deployment for one it manages.
 */
function operatorApply(deployment: V1Deployment, spec: unknown, facts: ClusterFacts): ApplyConfiguration {
  const parsed = parsePolicySpec(spec);
  if (!parsed.ok) throw new Error(`the benchmark's policy: ${JSON.stringify(parsed.errors)}`);
  const policy = { name: 'scale-bench-limit', generation: 1, spec: parsed.value };
  const planned = planWorkload(deployment, policy, { estimates: { get: () => undefined }, facts });
  if (!planned.ok)
    throw new Error(`planning ${deploymentKey(deployment)}: ${JSON.stringify(planned.errors)}`);
  const config = applyConfiguration(deployment, planned.nextRecord, planned.plan);
  return { ...config, metadata: { name: config.metadata.name, namespace: config.metadata.namespace } };
}

/**
 * The Deployments of a namespace as a watch shows them, and how many are done: written (their
 * generation at least the one a write of theirs produced, or above 1 when the writer is the
 * operator) and rolled out. Both phases tell convergence from it as the events arrive; a LIST
 * every 250 ms, as before, was late by half of that on average and cost both phases CPU.
 */
class DeploymentWatch {
  readonly #informer: ReturnType<typeof makeInformer<V1Deployment>>;
  readonly #done = new Set<string>();
  readonly #writtenAt = new Map<string, number>();
  readonly #namespace: string;
  #listener: (name: string, done: boolean) => void = () => {};

  constructor(kc: KubeConfig, namespace: string) {
    const apps = kc.makeApiClient(AppsV1Api);
    this.#namespace = namespace;
    this.#informer = makeInformer<V1Deployment>(kc, `/apis/apps/v1/namespaces/${namespace}/deployments`, () =>
      apps.listNamespacedDeployment({ namespace }),
    );
    this.#informer.on('add', (d) => this.#seen(d));
    this.#informer.on('update', (d) => this.#seen(d));
  }

  #seen(d: V1Deployment): void {
    const name = d.metadata?.name ?? '';
    const done = (d.metadata?.generation ?? 0) >= (this.#writtenAt.get(name) ?? 2) && !isRolling(d);
    if (done) this.#done.add(name);
    else this.#done.delete(name);
    this.#listener(name, done);
  }

  start(): Promise<void> {
    return this.#informer.start();
  }

  stop(): Promise<void> {
    return this.#informer.stop();
  }

  get doneCount(): number {
    return this.#done.size;
  }

  /** A write produced this generation: the Deployment is done once that is rolled out. */
  written(name: string, generation: number): void {
    this.#writtenAt.set(name, generation);
    // Its events may have come before the write's answer: judged again on the latest.
    const latest = this.#informer.get(name, this.#namespace);
    if (latest) this.#seen(latest);
  }

  /** Called with every event's Deployment and whether it is done. */
  onChange(listener: (name: string, done: boolean) => void): void {
    this.#listener = listener;
  }

  /** Resolves once `condition` holds, looked at after every event; rejects after `timeoutMs`. */
  until(what: string, condition: () => boolean, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      if (condition()) return resolve();
      const timer = setTimeout(() => {
        this.onChange(() => {});
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what} in ${this.#namespace}`));
      }, timeoutMs);
      this.onChange(() => {
        if (!condition()) return;
        clearTimeout(timer);
        this.onChange(() => {});
        resolve();
      });
    });
  }
}

/**
 * The limit: a bare client that sends each Deployment the server-side apply the operator would
 * send (one rollout each), keeping `budget` rollouts in flight and starting the next as soon as
 * a watch event shows one ended; 16 writes at a time, as the operator's workers.
 */
async function slidingWindow(
  kc: KubeConfig,
  namespace: string,
  keys: string[],
  budget: number,
  spec: unknown,
): Promise<{ seconds: number; peak: number }> {
  const apps = kc.makeApiClient(AppsV1Api);
  const facts = clusterFacts(await kc.makeApiClient(VersionApi).getCode());
  const deployments = new Map(
    (await apps.listNamespacedDeployment({ namespace })).items.map((d) => [d.metadata?.name ?? '', d]),
  );
  const watch = new DeploymentWatch(kc, namespace);
  await watch.start();
  const waiting = [...keys];
  const active = new Set<string>();
  let writing = 0;
  let peak = 0;
  let timer: NodeJS.Timeout | undefined;
  const started = Date.now();
  const write = async (name: string) => {
    const deployment = deployments.get(name);
    if (!deployment) throw new Error(`Deployment ${namespace}/${name} not found`);
    const written = await apps.patchNamespacedDeployment(
      {
        namespace,
        name,
        body: operatorApply(deployment, spec, facts),
        fieldManager: LIMIT_FIELD_MANAGER,
        force: true,
        fieldValidation: 'Strict',
      },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    );
    watch.written(name, written.metadata?.generation ?? 0);
  };
  try {
    await new Promise<void>((resolve, reject) => {
      const fill = () => {
        while (active.size < budget && writing < 16 && waiting.length > 0) {
          const name = waiting.shift() as string;
          active.add(name);
          peak = Math.max(peak, active.size);
          writing++;
          write(name)
            .then(() => {
              writing--;
              fill();
            })
            .catch(reject);
        }
        if (waiting.length === 0 && active.size === 0) resolve();
      };
      watch.onChange((name, done) => {
        if (done && active.delete(name)) fill();
      });
      timer = setTimeout(
        () => reject(new Error(`the limit did not finish in 30 min in ${namespace}`)),
        1_800_000,
      );
      fill();
    });
  } finally {
    clearTimeout(timer);
    await watch.stop();
  }
  return { seconds: (Date.now() - started) / 1000, peak };
}

/** Waits until the namespace's Deployments and pods are settled (no rollout, no terminating pod). */
async function settledNamespace(kc: KubeConfig, namespace: string, n: number): Promise<void> {
  await waitFor(
    `the Deployments and pods of ${namespace} to settle`,
    async () => (await allSettled(kc, namespace, n)) && (await podsSettled(kc, namespace, n)),
    { timeoutMs: 900_000, intervalMs: 1000 },
  );
}

async function operatorPhase(
  kc: KubeConfig,
  operator: OperatorProcess,
  namespace: string,
  policy: string,
  n: number,
  budget: number,
) {
  const writesBefore = await operator.sample('gracefulshutdown_deployment_writes_total');
  const reconciles = () =>
    operator.sample('controller_runtime_reconcile_total', { controller: DEPLOYMENT_CONTROLLER });
  const reconcilesBefore = await reconciles();
  const watch = new DeploymentWatch(kc, namespace);
  await watch.start();
  const cpuBefore = cpuSeconds(operator.pid);
  const machineBefore = machineCpuSeconds();
  const started = Date.now();
  await createPolicy(kc, policy, enforcePolicySpec(namespace, budget));
  // Told by a watch, as the limit's rollouts are; the policy's status (100 workloads, a read from
  // etcd each time) is polled only once they have converged.
  let converged: { operatorSeconds: number; operatorCpuSeconds: number; machineCpuSeconds: number };
  try {
    await watch.until('every Deployment written and rolled out', () => watch.doneCount === n, 1_800_000);
    converged = {
      operatorSeconds: (Date.now() - started) / 1000,
      operatorCpuSeconds: cpuSeconds(operator.pid) - cpuBefore,
      machineCpuSeconds: machineCpuSeconds() - machineBefore,
    };
  } finally {
    await watch.stop();
  }
  const reconcilesPerDeployment = ((await reconciles()) - reconcilesBefore) / n;
  await waitFor(
    'the policy status to say so',
    async () => (await readPolicyStatus(kc, policy)).counts?.compliant === n,
    { timeoutMs: 300_000, intervalMs: 250 },
  );
  const statusSeconds = (Date.now() - started) / 1000;
  const writes = (await operator.sample('gracefulshutdown_deployment_writes_total')) - writesBefore;
  // Releasing the Deployments is a write each (no rollout): done before the next phase starts.
  await deletePolicy(kc, policy);
  await quiet(operator);
  return { ...converged, statusSeconds, writesPerDeployment: writes / n, reconcilesPerDeployment };
}

/**
 * Rounds of: N Deployments converged by the operator, and N others by the limit, in alternating
 * order. Each phase starts with both namespaces settled (no terminating pods: kwok honours
 * their 30 s grace period, and they count against the nodes' pod capacity). Pods are ready
 * `podReadySeconds` after they are scheduled: 0 makes the control plane's CPU the bottleneck
 * on a small machine; a few seconds stand for real containers starting.
 */
export async function benchEnforce(
  kc: KubeConfig,
  operator: OperatorProcess,
  n: number,
  budget: number,
  rounds: number,
  podReadySeconds: number,
  progress: (round: EnforceRound) => void = () => {},
): Promise<EnforceResult> {
  const results: EnforceRound[] = [];
  for (let r = 1; r <= rounds; r++) {
    const suffix = `${podReadySeconds}s-${r}`;
    const limitNs = `scale-enforce-limit-${suffix}`;
    const operatorNs = `scale-enforce-${suffix}`;
    await createDeployments(kc, limitNs, names('svc', n), 1, podReadySeconds);
    await createDeployments(kc, operatorNs, names('svc', n), 1, podReadySeconds);
    await settledNamespace(kc, limitNs, n);
    await settledNamespace(kc, operatorNs, n);
    const first = r % 2 === 1 ? 'limit' : 'operator';
    const runLimit = async () => {
      const cpuBefore = cpuSeconds(operator.pid);
      const machineBefore = machineCpuSeconds();
      const limit = await slidingWindow(
        kc,
        limitNs,
        names('svc', n),
        budget,
        enforcePolicySpec(operatorNs, budget),
      );
      const operatorCpu = cpuSeconds(operator.pid) - cpuBefore;
      const machineCpu = machineCpuSeconds() - machineBefore;
      await settledNamespace(kc, limitNs, n);
      return { ...limit, operatorCpu, machineCpu };
    };
    const runOperator = async () => {
      const result = await operatorPhase(kc, operator, operatorNs, `scale-enforce-${suffix}`, n, budget);
      await settledNamespace(kc, operatorNs, n);
      return result;
    };
    let limit: Awaited<ReturnType<typeof runLimit>>;
    let own: Awaited<ReturnType<typeof runOperator>>;
    if (first === 'limit') {
      limit = await runLimit();
      own = await runOperator();
    } else {
      own = await runOperator();
      limit = await runLimit();
    }
    const round: EnforceRound = {
      first,
      ...own,
      limitSeconds: limit.seconds,
      limitPeak: limit.peak,
      operatorCpuInLimitSeconds: limit.operatorCpu,
      limitMachineCpuSeconds: limit.machineCpu,
    };
    results.push(round);
    progress(round);
  }
  return { n, budget, podReadySeconds, rounds: results };
}

export interface AuditResult {
  n: number;
  /** Heap per Deployment of a cache built here as the operator builds its own (exact: after gc). */
  cacheBytesPerDeployment: number;
  statusSeconds: number;
  listSeconds: number;
  cpuSeconds: number;
  peakRssMiB: number;
  heapBytesPerDeployment: number;
  /** The operator's heap after a full GC. */
  retainedHeapBytes: number;
  jsonBytesPerDeployment: number;
}

const TIER_SIZE = 1000;

/** Waits until kube-controller-manager has observed every Deployment's latest generation. */
async function settled(kc: KubeConfig): Promise<void> {
  const apps = kc.makeApiClient(AppsV1Api);
  await waitFor(
    'every Deployment observed',
    async () => {
      let next: string | undefined;
      do {
        const page = await apps.listDeploymentForAllNamespaces({
          limit: 500,
          ...(next ? { _continue: next } : {}),
        });
        if (page.items.some((d) => (d.status?.observedGeneration ?? 0) < (d.metadata?.generation ?? 0)))
          return false;
        next = page.metadata?._continue || undefined;
      } while (next !== undefined);
      return true;
    },
    { timeoutMs: 1_800_000, intervalMs: 2_000 },
  );
}

/** Waits until the operator's work queues stay empty for 2 s. */
async function quiet(operator: OperatorProcess): Promise<void> {
  let empty = 0;
  await waitFor(
    'the operator to go quiet',
    async () => {
      empty = (await operator.sample('workqueue_depth')) === 0 ? empty + 1 : 0;
      return empty >= 4;
    },
    { timeoutMs: 600_000, intervalMs: 500 },
  );
}

/**
 * The heap a cache of every Deployment takes per Deployment, built in this process the way the
 * operator builds its own (paginated typed list, deploymentCacheTransform), measured between
 * two full garbage collections. Needs node --expose-gc; NaN without it.
 */
async function cacheBytesPerDeployment(kc: KubeConfig): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) return Number.NaN;
  const apps = kc.makeApiClient(AppsV1Api);
  const transform = deploymentCacheTransform<V1Deployment>(FIELD_MANAGER);
  gc();
  const before = process.memoryUsage().heapUsed;
  const cache = new Map<string, V1Deployment>();
  let next: string | undefined;
  do {
    const page = await apps.listDeploymentForAllNamespaces({
      limit: 500,
      ...(next ? { _continue: next } : {}),
    });
    for (const item of page.items)
      cache.set(`${item.metadata?.namespace}/${item.metadata?.name}`, transform(item));
    next = page.metadata?._continue || undefined;
  } while (next !== undefined);
  gc();
  const bytes = (process.memoryUsage().heapUsed - before) / Math.max(1, cache.size);
  cache.clear();
  return bytes;
}

/**
 * The operator's heap after a full garbage collection: the bench asks its inspector (started
 * with --inspect=127.0.0.1:0, its address in the operator's log) for HeapProfiler.collectGarbage.
 */
async function retainedHeap(operator: OperatorProcess): Promise<number> {
  const url = /ws:\/\/127\.0\.0\.1:\d+\/[\w-]+/.exec(readFileSync(operator.logPath, 'utf8'))?.[0];
  if (url === undefined) throw new Error('the operator runs without --inspect: its heap cannot be collected');
  const socket = new WebSocket(url);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = reject;
  });
  const call = (id: number, method: string) =>
    new Promise<void>((resolve) => {
      socket.addEventListener('message', (event) => {
        if ((JSON.parse(String(event.data)) as { id?: number }).id === id) resolve();
      });
      socket.send(JSON.stringify({ id, method }));
    });
  await call(1, 'HeapProfiler.enable');
  await call(2, 'HeapProfiler.collectGarbage');
  await call(3, 'HeapProfiler.collectGarbage');
  socket.close();
  return operator.sample('nodejs_heap_size_used_bytes');
}

/**
 * Grows the cluster to each size in `sizes` (1000 Deployments per namespace, 0 replicas), then
 * times an Audit policy selecting all of them from creation to a complete status. The policy is
 * kept for the next tier's growth, replaced by the next tier's policy.
 */
export async function benchAudit(
  kc: KubeConfig,
  operator: OperatorProcess,
  sizes: number[],
  onResult: (result: AuditResult) => void,
): Promise<string | undefined> {
  const apps = kc.makeApiClient(AppsV1Api);
  const baseline = {
    heap: await retainedHeap(operator),
    deployments: (await apps.listDeploymentForAllNamespaces()).items.length,
  };
  let created = 0;
  let policy: string | undefined;
  for (const n of sizes) {
    while (created < n) {
      const size = Math.min(TIER_SIZE, n - created);
      const namespace = `scale-audit-${String(created / TIER_SIZE).padStart(3, '0')}`;
      await createDeployments(kc, namespace, names('svc', size), 0);
      created += size;
    }
    const namespaces = Array.from(
      { length: Math.ceil(n / TIER_SIZE) },
      (_, i) => `scale-audit-${String(i).padStart(3, '0')}`,
    );
    // The cluster has settled (every Deployment observed by its controller, ReplicaSet made) and
    // the operator has taken in every Deployment before the clock starts.
    await settled(kc);
    await quiet(operator);
    if (policy) await deletePolicy(kc, policy);
    policy = `scale-audit-${n}`;
    const cpuBefore = cpuSeconds(operator.pid);
    const started = Date.now();
    await createPolicy(kc, policy, {
      mode: 'Audit',
      namespaceSelector: {
        matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: namespaces }],
      },
      observedLatency: { source: 'None' },
    });
    const name = policy;
    await waitFor('a complete status', async () => (await readPolicyStatus(kc, name)).counts?.matched === n, {
      timeoutMs: 600_000,
      intervalMs: 100,
    });
    const statusSeconds = (Date.now() - started) / 1000;
    const cpu = cpuSeconds(operator.pid) - cpuBefore;
    const listStarted = Date.now();
    const list = await apps.listDeploymentForAllNamespaces();
    const listSeconds = (Date.now() - listStarted) / 1000;
    const raw = await kc
      .makeApiClient(AppsV1Api)
      .listNamespacedDeployment({ namespace: namespaces[0] as string });
    const jsonBytes =
      raw.items.reduce((sum, d) => sum + JSON.stringify(d).length, 0) / Math.max(1, raw.items.length);
    const heap = await retainedHeap(operator);
    onResult({
      n,
      cacheBytesPerDeployment: await cacheBytesPerDeployment(kc),
      statusSeconds,
      listSeconds,
      cpuSeconds: cpu,
      peakRssMiB: memoryMiB(operator.pid).peak,
      retainedHeapBytes: heap,
      heapBytesPerDeployment: (heap - baseline.heap) / Math.max(1, list.items.length - baseline.deployments),
      jsonBytesPerDeployment: jsonBytes,
    });
  }
  return policy;
}

export interface SteadyResult {
  deployments: number;
  minutes: number;
  /** The operator's writes, by resource (deployments, gracefulshutdownpolicies/status, leases, events...). */
  writes: Record<string, number>;
  cpuPercent: number;
  requestsPerMinute: number;
  rssMiB: number;
  /** The operator's event-loop delay over the whole time: p99 and the longest, milliseconds. */
  eventLoop: { p99: number; max: number };
}

interface AuditEvent {
  auditID?: string;
  verb?: string;
  stageTimestamp?: string;
  user?: { username?: string };
  objectRef?: { resource?: string; subresource?: string };
}

/** The operator's requests the audit log recorded between two times: how many, and the writes by resource. */
export function auditedRequests(
  auditLogPath: string,
  from: number,
  to: number,
): { requests: number; writes: Record<string, number> } {
  const ids = new Set<string>();
  const writes: Record<string, number> = {};
  for (const line of readFileSync(auditLogPath, 'utf8').split('\n')) {
    if (!line) continue;
    const event = JSON.parse(line) as AuditEvent;
    if (event.user?.username !== OPERATOR_USER) continue;
    const at = Date.parse(event.stageTimestamp ?? '');
    if (at < from || at > to || event.auditID === undefined || ids.has(event.auditID)) continue;
    ids.add(event.auditID);
    if (!['create', 'update', 'patch', 'delete'].includes(event.verb ?? '')) continue;
    const { resource = '?', subresource } = event.objectRef ?? {};
    const name = subresource ? `${resource}/${subresource}` : resource;
    writes[name] = (writes[name] ?? 0) + 1;
  }
  return { requests: ids.size, writes };
}

/** The operator left alone with everything cached: what it costs when nothing happens. */
export async function benchSteady(
  operator: OperatorProcess,
  auditLogPath: string,
  deployments: number,
  minutes: number,
): Promise<SteadyResult> {
  // The event-loop delay histogram restarts with each scrape: read now, it covers the wait.
  await operator.metrics();
  const from = Date.now();
  const cpuBefore = cpuSeconds(operator.pid);
  await new Promise((resolve) => setTimeout(resolve, minutes * 60_000));
  const to = Date.now();
  const cpu = cpuSeconds(operator.pid) - cpuBefore;
  const [p99, max] = await operator.samples([
    'nodejs_eventloop_lag_p99_seconds',
    'nodejs_eventloop_lag_max_seconds',
  ]);
  const { requests, writes } = auditedRequests(auditLogPath, from, to);
  return {
    deployments,
    minutes,
    writes,
    cpuPercent: (100 * cpu) / ((to - from) / 1000),
    requestsPerMinute: requests / ((to - from) / 60_000),
    rssMiB: memoryMiB(operator.pid).rss,
    eventLoop: { p99: (p99 ?? 0) * 1000, max: (max ?? 0) * 1000 },
  };
}

export type { V1Deployment };
