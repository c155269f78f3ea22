// Admission latency for `npm run bench`: server-side dry-run creates of a Deployment through the
// apiserver at a fixed rate, once without the webhook configuration (the limit: what the
// apiserver alone costs, measured in the same run) and once with it, calling the operator's
// webhook by URL; plus the webhook's own decision time from its histogram. Asserts nothing.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AdmissionregistrationV1Api, AppsV1Api, type KubeConfig } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { bucketQuantile } from '../../operator/src/latency/histogram.ts';
import { MUTATE_DEPLOYMENTS_PATH } from '../../operator/src/webhook/server.ts';
import { waitFor } from '../cluster/wait.ts';
import { sampleDeployment } from '../operator/fixtures.ts';
import { repoRoot } from '../operator/install.ts';
import type { OperatorProcess } from '../operator/operator-process.ts';

const CONFIGURATION = 'graceful-shutdown-operator';

export interface AdmissionBenchOptions {
  kubeConfig: KubeConfig;
  operator: OperatorProcess;
  /** Selected by an Enforce policy: every admission is a mutation. */
  namespace: string;
  rps: number;
  seconds: number;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

/** Open loop: one request every 1/rps s whatever the answers do; latencies in ms. */
async function load(
  opts: AdmissionBenchOptions,
  label: string,
): Promise<{ p50: number; p99: number; failed: number; mutated: number }> {
  const apps = opts.kubeConfig.makeApiClient(AppsV1Api);
  const total = opts.rps * opts.seconds;
  const latencies: number[] = [];
  let failed = 0;
  let mutated = 0;
  const started = performance.now();
  const inFlight: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = started + (i * 1000) / opts.rps;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const body = sampleDeployment(`${label}-${i}`);
    const t0 = performance.now();
    inFlight.push(
      apps.createNamespacedDeployment({ namespace: opts.namespace, body, dryRun: 'All' }).then(
        (created) => {
          latencies.push(performance.now() - t0);
          if (created.spec?.template.spec?.containers[0]?.lifecycle?.preStop) mutated++;
        },
        () => {
          failed++;
        },
      ),
    );
  }
  await Promise.all(inFlight);
  latencies.sort((a, b) => a - b);
  return { p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), failed, mutated };
}

/** The webhook's own decision time at q, from its histogram (seconds -> ms). */
async function decisionMs(operator: OperatorProcess, q: number): Promise<number> {
  const text = await operator.metrics();
  const byLe = new Map<number, number>();
  for (const line of text.split('\n')) {
    const m = /^gracefulshutdown_admission_duration_seconds_bucket\{(.*)\} (\S+)$/.exec(line);
    const le = m?.[1] ? /le="([^"]+)"/.exec(m[1])?.[1] : undefined;
    if (!m || le === undefined) continue;
    const bound = le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le);
    byLe.set(bound, (byLe.get(bound) ?? 0) + Number(m[2]));
  }
  const buckets = [...byLe].sort((a, b) => a[0] - b[0]).map(([le, count]) => ({ le, count }));
  const result = bucketQuantile(q, buckets);
  return result.ok ? result.value * 1000 : Number.NaN;
}

export async function benchAdmission(opts: AdmissionBenchOptions): Promise<string[][]> {
  const admission = opts.kubeConfig.makeApiClient(AdmissionregistrationV1Api);
  await admission.deleteMutatingWebhookConfiguration({ name: CONFIGURATION }).catch(() => undefined);
  const without = await load(opts, 'plain');

  const shipped = parse(
    readFileSync(join(repoRoot, 'config', 'webhook', 'mutating_webhook_configuration.yaml'), 'utf8'),
  ) as { webhooks: Record<string, unknown>[] };
  shipped.webhooks = shipped.webhooks.map((w) => ({
    ...w,
    clientConfig: { url: `https://127.0.0.1:${opts.operator.webhookPort}${MUTATE_DEPLOYMENTS_PATH}` },
    namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': opts.namespace } },
  }));
  await admission.createMutatingWebhookConfiguration({ body: shipped as never });
  // An operator that has looked for the configuration for a while looks again only every
  // --webhook-check-ms (60 s; the certificate controller backs off while it is missing).
  await waitFor(
    'the caBundle injected',
    async () => {
      const current = await admission.readMutatingWebhookConfiguration({ name: CONFIGURATION });
      return (current.webhooks ?? []).every((w) => String(w.clientConfig.caBundle ?? '') !== '');
    },
    { timeoutMs: 90_000, intervalMs: 1000 },
  );
  try {
    // The event-loop delay histogram (prom-client's monitorEventLoopDelay) restarts with each
    // scrape: read now, its figures after the load are those of the load.
    await opts.operator.metrics();
    const withWebhook = await load(opts, 'hooked');
    // One scrape for both (the next one starts the histogram again).
    const [p50, p99, max] = await opts.operator.samples([
      'nodejs_eventloop_lag_p50_seconds',
      'nodejs_eventloop_lag_p99_seconds',
      'nodejs_eventloop_lag_max_seconds',
    ]);
    const loop = { p50: (p50 as number) * 1000, p99: (p99 as number) * 1000, max: (max as number) * 1000 };
    const total = String(opts.rps * opts.seconds);
    return [
      [
        'apiserver alone (limit)',
        `${opts.rps}`,
        total,
        without.p50.toFixed(1),
        without.p99.toFixed(1),
        String(without.failed),
        '-',
      ],
      [
        'apiserver + webhook',
        `${opts.rps}`,
        total,
        withWebhook.p50.toFixed(1),
        withWebhook.p99.toFixed(1),
        String(withWebhook.failed),
        `${withWebhook.mutated}`,
      ],
      [
        'webhook decision (its histogram)',
        `${opts.rps}`,
        total,
        (await decisionMs(opts.operator, 0.5)).toFixed(2),
        (await decisionMs(opts.operator, 0.99)).toFixed(2),
        '-',
        '-',
      ],
      // An admission waits while the operator's thread does anything else (a status pass, GC).
      // prom-client samples every 10 ms and counts that interval in: an idle loop reads ~10 ms.
      ['operator event loop (idle: ~10)', '', '', loop.p50.toFixed(1), loop.p99.toFixed(1), '-', '-'],
      // One long delay (GC, a long synchronous stretch) holds up every admission then in flight.
      ['operator event loop: longest', '', '', '-', loop.max.toFixed(1), '-', '-'],
    ];
  } finally {
    await admission.deleteMutatingWebhookConfiguration({ name: CONFIGURATION }).catch(() => undefined);
  }
}

export const ADMISSION_HEADER = ['admission', 'req/s', 'requests', 'p50 ms', 'p99 ms', 'failed', 'mutated'];
