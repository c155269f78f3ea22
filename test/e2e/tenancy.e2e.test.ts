// A tenant tries to hold back another tenant's Deployments, or take the operator down, through
// the real apiserver with a namespace-admin ServiceAccount of its own (docs/security.md). Each
// test asserts what must still hold, with a negative control where the attack can honestly be
// shown to work against the unprotected path. And the operator's own ServiceAccount token
// against the shipped ValidatingAdmissionPolicies (config/rbac/operator_guard.yaml).
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer, request as httpsRequest, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import {
  AdmissionregistrationV1Api,
  AppsV1Api,
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  RbacAuthorizationV1Api,
  setHeaderOptions,
  type V1Deployment,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { APPLIED_ANNOTATION, READINESS_PATH_ANNOTATION } from '../../operator/src/api/annotations.ts';
import { recordAnnotation } from '../../operator/src/policy/ownership.ts';
import { RecordSeal } from '../../operator/src/policy/record-seal.ts';
import { createCA, issueServingCert } from '../../operator/src/webhook/certificates.ts';
import { MUTATE_DEPLOYMENTS_PATH } from '../../operator/src/webhook/server.ts';
import { serviceAccountKubeconfig } from '../cluster/cluster.ts';
import {
  logDir,
  OPERATOR_NAMESPACE,
  OPERATOR_SERVICE_ACCOUNT,
  type OperatorProcess,
  RECORD_KEY_SECRET,
  readPolicyStatus,
  WEBHOOK_CONFIGURATION,
  waitFor,
  webManifest,
} from '../operator/harness.ts';
import { demoServiceDeployment } from './real-pods.ts';
import {
  adminKubeConfig,
  clusterInfo,
  deleteWebhookConfiguration,
  installWebhookConfiguration,
  kubectl,
  operatorRecord,
  readDeployment,
  startOperatorProcess,
  useNamespace,
  usePolicies,
} from './support.ts';

const attacker = useNamespace('tenant-a');
const victim = useNamespace('tenant-b');
const flooded = useNamespace('tenant-flood');
const scraped = useNamespace('tenant-scrape');
const collected = useNamespace('tenant-token');
const legit = useNamespace('tenant-token-ok');
const breaking = useNamespace('tenant-breaks');
const bystander = useNamespace('tenant-bystander');
const policies = usePolicies();
const POLICY = 'tenancy';

let operator: OperatorProcess;
let tenantKubeconfig: string;
/** Two HTTPS servers answering like Prometheus, recording each request's Authorization header. */
const prometheusLike: { server: Server; port: number; authorizations: (string | undefined)[] }[] = [];
const TOKEN = 'tenancy-e2e-secret-token';
let operatorKubeconfig: string;

const apps = () => adminKubeConfig().makeApiClient(AppsV1Api);

/** kubectl as the tenant: '' on success, else its error text. */
async function asTenant(args: string[], input?: string): Promise<string> {
  const result = await kubectl(args, { kubeconfig: tenantKubeconfig, ...(input ? { input } : {}) });
  return result.code === 0 ? '' : result.stderr.trim();
}

/** A record the operator would never have written: a made-up failure, or a rollout. */
function forgedRecord(extra: object): string {
  return JSON.stringify({ policy: POLICY, policyGeneration: 1, containers: {}, reason: 'forged', ...extra });
}

const FAILURE = {
  failure: {
    policyGeneration: 1,
    reason: 'RolloutTimedOut',
    message: 'made up',
    at: new Date().toISOString(),
  },
};

/** The policy's only rule: a grace period of at least this (no probe, no hook). */
const WANTED = 45;
const SPEC = {
  mode: 'Enforce',
  observedLatency: { source: 'None' },
  readinessProbe: { inject: 'Never' },
  preStop: { inject: 'Never' },
  terminationGracePeriod: { minSeconds: WANTED },
};

/**
 * A Deployment manifest with the record annotation, for the tenant's kubectl. Compliant (a grace
 * period above the policy's): the operator has nothing to write, so the forged record stays.
 */
function withRecord(namespace: string, name: string, record: string, extra: Record<string, unknown> = {}) {
  const manifest = JSON.parse(webManifest(namespace, name, { replicas: 1, grace: 60 }));
  manifest.metadata.annotations = { [APPLIED_ANNOTATION]: record };
  Object.assign(manifest.spec.template.spec, extra);
  return JSON.stringify(manifest);
}

async function status() {
  return readPolicyStatus(adminKubeConfig(), POLICY);
}

/** The Deployment once the operator wrote it: its record names the policy, the grace raised. */
async function enforced(namespace: string, name: string): Promise<V1Deployment | undefined> {
  const d = await readDeployment(namespace, name);
  return (await operatorRecord(d))?.policy === POLICY &&
    d.spec?.template.spec?.terminationGracePeriodSeconds === WANTED
    ? d
    : undefined;
}

beforeAll(async () => {
  const admin = adminKubeConfig();
  const dir = logDir(clusterInfo());
  // The tenant: namespace-admin in tenant-a (the built-in admin ClusterRole, bound there).
  await admin
    .makeApiClient(CoreV1Api)
    .createNamespacedServiceAccount({ namespace: attacker.name, body: { metadata: { name: 'tenant' } } });
  await admin.makeApiClient(RbacAuthorizationV1Api).createNamespacedRoleBinding({
    namespace: attacker.name,
    body: {
      metadata: { name: 'tenant-admin' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'admin' },
      subjects: [{ kind: 'ServiceAccount', name: 'tenant', namespace: attacker.name }],
    },
  });
  tenantKubeconfig = await serviceAccountKubeconfig(admin, attacker.name, 'tenant', dir);
  // The Prometheus the operator is configured with (its origin gets the token), and a collector
  // a policy names: both local HTTPS servers under a CA the operator trusts.
  const now = new Date(Date.now() - 60_000);
  const ca = await createCA({ commonName: 'tenancy-e2e-ca', notBefore: now, validityMs: 3_600_000 });
  const serving = await issueServingCert({
    ca,
    dnsNames: ['127.0.0.1'],
    notBefore: now,
    validityMs: 3_600_000,
  });
  const caFile = join(dir, 'tenancy-prometheus-ca.pem');
  const tokenFile = join(dir, 'tenancy-prometheus-token');
  writeFileSync(caFile, ca.cert);
  writeFileSync(tokenFile, TOKEN, { mode: 0o600 });
  for (let i = 0; i < 2; i++) {
    const authorizations: (string | undefined)[] = [];
    const server = createHttpsServer(serving, (req, res) => {
      authorizations.push(req.headers.authorization);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ status: 'success', data: { resultType: 'vector', result: [] } }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    prometheusLike.push({ server, port: (server.address() as AddressInfo).port, authorizations });
  }
  operator = await startOperatorProcess('operator-tenancy.log', [
    '--resync-ms',
    '2000',
    '--rollout-check-ms',
    '500',
    '--webhook-check-ms',
    '1000',
    '--latency-refresh-ms',
    '2000',
    '--prometheus-url',
    `https://127.0.0.1:${prometheusLike[0]?.port}`,
    '--prometheus-bearer-token-file',
    tokenFile,
    '--prometheus-ca-file',
    caFile,
  ]);
  operatorKubeconfig = await serviceAccountKubeconfig(
    admin,
    OPERATOR_NAMESPACE,
    OPERATOR_SERVICE_ACCOUNT,
    dir,
  );
  await policies.apply(POLICY, attacker.name, {
    namespaceSelector: {
      matchExpressions: [
        { key: 'kubernetes.io/metadata.name', operator: 'In', values: [attacker.name, victim.name] },
      ],
    },
    ...SPEC,
    // The strictest: any failure the operator believed would stop every namespace.
    rollout: { maxConcurrent: 1, breakerNamespaces: 1 },
  });
  await policies.apply(`${POLICY}-flood`, flooded.name, SPEC);
  await installWebhookConfiguration([operator], [flooded.name]);
});

afterAll(async () => {
  await deleteWebhookConfiguration();
  await operator?.stop();
  for (const { server } of prometheusLike) await new Promise((resolve) => server.close(resolve));
});

const rssMiB = () => {
  const line = readFileSync(`/proc/${operator.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return Number(line?.[1] ?? 0) / 1024;
};

/** The operator's RSS sampled every `everyMs` while `work` runs: its value and the peak (MiB). */
async function peakRssDuring<T>(
  everyMs: number,
  work: () => Promise<T>,
): Promise<{ result: T; before: number; peak: number }> {
  const before = rssMiB();
  let peak = before;
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssMiB());
  }, everyMs);
  try {
    return { result: await work(), before, peak };
  } finally {
    clearInterval(sampler);
  }
}
/** The pod's memory limit (config/manager/manager.yaml). */
const LIMIT_MIB = 512;

describe("a tenant's writes to its own records", () => {
  test('a forged failure and a forged rollout hold nobody, and are reported refused; the other tenant is enforced', async () => {
    // The tenant's attacks, through the apiserver with its own token.
    expect(
      await asTenant(['apply', '-f', '-'], withRecord(attacker.name, 'evil-failure', forgedRecord(FAILURE))),
    ).toBe('');
    // Rolling forever (no node matches) with a record naming its own generation: a budget slot,
    // were the record believed (maxConcurrent 1).
    const rollout = { rollout: { generation: 1, startedAt: new Date().toISOString(), previous: {} } };
    expect(
      await asTenant(
        ['apply', '-f', '-'],
        withRecord(attacker.name, 'evil-rollout', forgedRecord(rollout), {
          nodeSelector: { nowhere: 'true' },
        }),
      ),
    ).toBe('');
    // What the tenant cannot do: read the operator's key, or change the policy.
    const secret = await asTenant(['get', 'secret', RECORD_KEY_SECRET, '-n', OPERATOR_NAMESPACE]);
    expect(secret).toMatch(/forbidden/i);
    expect(
      await asTenant(['patch', 'gsp', POLICY, '--type=merge', '-p', '{"spec":{"mode":"Audit"}}']),
    ).toMatch(/forbidden/i);

    // The other tenant's non-compliant Deployment arrives: enforced within the budget.
    const started = Date.now();
    expect(
      (await kubectl(['apply', '-f', '-'], { input: webManifest(victim.name, 'victim', { replicas: 1 }) }))
        .code,
    ).toBe(0);
    await waitFor('the victim enforced', () => enforced(victim.name, 'victim'), { timeoutMs: 60_000 });
    console.log(
      `the other tenant's Deployment enforced ${Date.now() - started} ms after it was created, under the attack`,
    );

    const held = await waitFor('the refusals in status', async () => {
      const s = await status();
      const refused = (name: string) =>
        s?.workloads?.find((w) => w.name === name)?.message?.includes('record was refused');
      return refused('evil-failure') && refused('evil-rollout') ? s : undefined;
    });
    expect(held?.heldNamespaces ?? []).toEqual([]);
    expect(held?.conditions?.find((c) => c.type === 'RolloutBreakerOpen')).toMatchObject({
      status: 'False',
      reason: 'NoFailedRollouts',
    });
    expect(await operator.sample('gracefulshutdown_records_refused', { policy: POLICY })).toBe(2);
    const events = await kubectl([
      'get',
      'events',
      '-n',
      attacker.name,
      '--field-selector',
      'reason=RecordRefused',
      '-o',
      'name',
    ]);
    expect(events.stdout.trim().split('\n').length).toBeGreaterThanOrEqual(2);
  });

  test('a sealed record copied to another Deployment is refused too', async () => {
    const honest = await waitFor("the tenant's own Deployment enforced", async () => {
      if (!(await readDeployment(attacker.name, 'honest').catch(() => undefined)))
        await asTenant(
          ['apply', '-f', '-'],
          webManifest(attacker.name, 'honest', { replicas: 1, grace: 30 }),
        );
      return enforced(attacker.name, 'honest');
    });
    const sealed = honest.metadata?.annotations?.[APPLIED_ANNOTATION] ?? '';
    expect(JSON.parse(sealed)).toHaveProperty('seal');
    expect(await asTenant(['apply', '-f', '-'], withRecord(attacker.name, 'evil-copy', sealed))).toBe('');
    await waitFor('the copy reported refused', async () => {
      const s = await status();
      const message = s?.workloads?.find((w) => w.name === 'evil-copy')?.message ?? '';
      return message.includes('its seal does not match this Deployment') ? s : undefined;
    });
    // The copy claims grace 45 as the operator's: the user's 60 is never taken over nor lowered.
    const copy = await readDeployment(attacker.name, 'evil-copy');
    expect(copy.spec?.template.spec?.terminationGracePeriodSeconds).toBe(60);
    expect(copy.metadata?.managedFields?.map((f) => f.manager)).not.toContain('graceful-shutdown-operator');
  });

  test('negative control: the same failure sealed with the operator key stops every namespace (breakerNamespaces 1)', async () => {
    // What the seal prevents: an admin (who can read the key) seals the tenant's forged failure.
    const secret = await adminKubeConfig()
      .makeApiClient(CoreV1Api)
      .readNamespacedSecret({ namespace: OPERATOR_NAMESPACE, name: RECORD_KEY_SECRET });
    const seal = new RecordSeal(Buffer.from(secret.data?.key ?? '', 'base64'));
    const evil = await readDeployment(attacker.name, 'evil-failure');
    const record = JSON.parse(forgedRecord(FAILURE));
    await apps().patchNamespacedDeployment(
      {
        namespace: attacker.name,
        name: 'evil-failure',
        body: [
          {
            op: 'replace',
            path: `/metadata/annotations/${APPLIED_ANNOTATION.replace('/', '~1')}`,
            value: recordAnnotation(evil, record, seal),
          },
        ],
      },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
    );
    const open = await waitFor('the breaker open', async () => {
      const s = await status();
      return s?.conditions?.find((c) => c.type === 'RolloutBreakerOpen')?.status === 'True' ? s : undefined;
    });
    expect(open?.heldNamespaces).toEqual([attacker.name]);
    // A second victim now waits: the attack would have worked.
    await kubectl(['apply', '-f', '-'], { input: webManifest(victim.name, 'victim-2', { replicas: 1 }) });
    await waitFor('victim-2 held by the breaker', async () => {
      const s = await status();
      return s?.workloads?.find((w) => w.name === 'victim-2')?.reason === 'BreakerOpen' ? s : undefined;
    });
    expect(await operatorRecord(await readDeployment(victim.name, 'victim-2'))).toBeUndefined();
    // Undone, so the tests after this one see the breaker closed.
    await kubectl(['delete', 'deployment', 'evil-failure', '-n', attacker.name, '--wait=true']);
    await waitFor('victim-2 enforced once the failure is gone', () => enforced(victim.name, 'victim-2'), {
      timeoutMs: 60_000,
    });
  });
});

describe("the operator's own ServiceAccount against the shipped ValidatingAdmissionPolicies", () => {
  /** A patch with the operator's token, as it writes (no get first): '' when admitted, else why not. */
  const asOperator = async (
    kind: 'deployment' | 'webhook',
    strategy: PatchStrategy,
    body: object,
  ): Promise<string> => {
    const kc = new KubeConfig();
    kc.loadFromFile(operatorKubeconfig);
    try {
      if (kind === 'deployment')
        await kc
          .makeApiClient(AppsV1Api)
          .patchNamespacedDeployment(
            { namespace: victim.name, name: 'victim', body },
            setHeaderOptions('Content-Type', strategy),
          );
      else
        await kc
          .makeApiClient(AdmissionregistrationV1Api)
          .patchMutatingWebhookConfiguration(
            { name: WEBHOOK_CONFIGURATION, body },
            setHeaderOptions('Content-Type', strategy),
          );
      return '';
    } catch (error) {
      return String((error as { body?: unknown }).body ?? error);
    }
  };
  const merge = (kind: 'deployment' | 'webhook', body: object) =>
    asOperator(kind, PatchStrategy.MergePatch, body);
  const json = (kind: 'deployment' | 'webhook', ops: object[]) =>
    asOperator(kind, PatchStrategy.JsonPatch, ops);

  test('changing an image, a label, the replicas or another annotation is refused; its own annotation is not', async () => {
    expect(
      await json('deployment', [
        { op: 'replace', path: '/spec/template/spec/containers/0/image', value: 'evil.example/x:1' },
      ]),
    ).toMatch(/may change only a container's readinessProbe and lifecycle.preStop/);
    expect(await merge('deployment', { metadata: { labels: { owned: 'by-me' } } })).toMatch(
      /may not change labels/,
    );
    expect(await merge('deployment', { metadata: { annotations: { 'example.com/x': 'y' } } })).toMatch(
      /only annotations of its own group/,
    );
    expect(await merge('deployment', { spec: { replicas: 5 } })).toMatch(/outside its pod template/);
    expect(
      await merge('deployment', {
        spec: { template: { spec: { serviceAccountName: 'default', hostNetwork: true } } },
      }),
    ).toMatch(/only terminationGracePeriodSeconds in a pod spec/);
    // Positive control: what the operator does write passes (an annotation of its group).
    expect(
      await merge('deployment', { metadata: { annotations: { 'gracefulshutdown.dev/probe': 'ok' } } }),
    ).toBe('');
    expect((await readDeployment(victim.name, 'victim')).spec?.template.spec?.containers[0]?.image).toBe(
      'registry.example/web:1',
    );
  });

  test("changing the webhook configuration's clientConfig is refused; its caBundle is not", async () => {
    // The operator injected the caBundle when the configuration was installed: allowed.
    expect(
      await json('webhook', [
        { op: 'replace', path: '/webhooks/0/clientConfig/url', value: 'https://evil.example/x' },
      ]),
    ).toMatch(/may change only its webhooks' clientConfig.caBundle/);
    expect(
      await json('webhook', [{ op: 'replace', path: '/webhooks/0/failurePolicy', value: 'Fail' }]),
    ).toMatch(/caBundle/);
    const current = await adminKubeConfig()
      .makeApiClient(AdmissionregistrationV1Api)
      .readMutatingWebhookConfiguration({ name: WEBHOOK_CONFIGURATION });
    const caBundle = current.webhooks?.[0]?.clientConfig.caBundle;
    expect(
      await json('webhook', [{ op: 'replace', path: '/webhooks/0/clientConfig/caBundle', value: caBundle }]),
    ).toBe('');
  });
});

/**
 * A tenant's pod serving a hostile /metrics: 600,000 bucket lines (about 30 MiB), each with a new
 * `le`, a marker in its labels. Run by the demo-service image's node, as real-pods.ts does.
 */
const hostileMetricsScript = `
const http = require('node:http');
http.createServer((req, res) => {
  if (req.url !== '/metrics') return res.end('ok');
  res.setHeader('content-type', 'text/plain; version=0.0.4');
  let i = 0;
  const more = () => {
    while (i < 600000) {
      const line = 'http_request_duration_seconds_bucket{marker="ZZMARKERZZ",le="0.' + i + '"} ' + i + '\\n';
      i++;
      if (!res.write(line)) return res.once('drain', more);
    }
    res.end();
  };
  more();
}).listen(8080);
`;

describe('a tenant pod serving a hostile /metrics (Scrape, real node)', () => {
  test('refused with the limit named and none of its text; the operator stays under its memory limit and leading', async () => {
    const hostile = demoServiceDeployment(scraped.name, 'hostile');
    const app = hostile.spec?.template.spec?.containers[0];
    if (!app) throw new Error('no container');
    app.command = ['/nodejs/bin/node', '-e', hostileMetricsScript];
    await apps().createNamespacedDeployment({ namespace: scraped.name, body: hostile });
    await waitFor(
      'the hostile pod ready',
      async () => {
        const d = await readDeployment(scraped.name, 'hostile');
        return (d.status?.readyReplicas ?? 0) >= 1 ? d : undefined;
      },
      { timeoutMs: 60_000 },
    );
    await policies.apply(`${POLICY}-scrape`, scraped.name, {
      mode: 'Audit',
      observedLatency: { source: 'Scrape', scrape: { port: 'http', path: '/metrics' }, minSamples: 1 },
    });
    const { result: observed, peak } = await peakRssDuring(100, async () => {
      const text = await waitFor(
        'the scrape refused in status',
        async () => {
          const s = await readPolicyStatus(adminKubeConfig(), `${POLICY}-scrape`);
          const w = s?.workloads?.find((x) => x.name === 'hostile');
          const text = `${w?.observedLatency?.message ?? ''} ${w?.message ?? ''}`;
          return text.includes('refused') ? text : undefined;
        },
        { timeoutMs: 60_000 },
      );
      // A few more scrapes of it.
      await new Promise((resolve) => setTimeout(resolve, 6_000));
      return text;
    });
    console.log(
      `hostile /metrics (600,000 lines, ~30 MiB): status says "${observed.slice(0, 160)}"; operator RSS peak ${peak.toFixed(0)} MiB (limit ${LIMIT_MIB})`,
    );
    expect(observed).not.toContain('ZZMARKERZZ');
    expect(observed).toMatch(/more than/);
    expect(peak).toBeLessThan(LIMIT_MIB);
    expect(operator.exited).toBe(false);
    expect(await operator.sample('leader_election_master_status')).toBe(1);
  });
});

describe('a policy naming a Prometheus URL that collects tokens', () => {
  test('the collector gets queries but never the bearer token; the configured origin does get it', async () => {
    const [configured, collector] = prometheusLike;
    if (!configured || !collector) throw new Error('no servers');
    for (const ns of [collected.name, legit.name])
      await kubectl(['apply', '-f', '-'], { input: webManifest(ns, 'web', { replicas: 1 }) });
    const spec = (port: number) => ({
      mode: 'Audit',
      observedLatency: { source: 'Prometheus', prometheus: { url: `https://127.0.0.1:${port}` } },
    });
    await policies.apply(`${POLICY}-collector`, collected.name, spec(collector.port));
    await policies.apply(`${POLICY}-configured`, legit.name, spec(configured.port));
    await waitFor(
      'both asked',
      async () => collector.authorizations.length > 0 && configured.authorizations.length > 0,
      { timeoutMs: 60_000 },
    );
    console.log(
      `token: the collector a policy named got ${collector.authorizations.length} queries, ${collector.authorizations.filter(Boolean).length} with an Authorization header; the configured origin got ${configured.authorizations.filter((a) => a === `Bearer ${TOKEN}`).length} with the token`,
    );
    expect(collector.authorizations.every((a) => a === undefined)).toBe(true);
    // Negative control: the same kind of server, as the configured origin, does receive it.
    expect(configured.authorizations).toContain(`Bearer ${TOKEN}`);
  });
});

describe('a tenant breaking its own rollout, or deleting its record', () => {
  test("a rollout of the operator's that the tenant's app fails holds the tenant's namespace only (default breakerNamespaces)", async () => {
    // The tenant's app does not serve the path the policy's probe asks (Trust writes it anyway):
    // the operator's rollout stalls, as if the tenant had broken it on purpose.
    const stall = demoServiceDeployment(breaking.name, 'stall');
    stall.metadata = { ...stall.metadata, annotations: { [READINESS_PATH_ANNOTATION]: '/nope' } };
    await apps().createNamespacedDeployment({ namespace: breaking.name, body: stall });
    await waitFor(
      'stall ready',
      async () => {
        const d = await readDeployment(breaking.name, 'stall');
        return (d.status?.readyReplicas ?? 0) >= 1 ? d : undefined;
      },
      { timeoutMs: 60_000 },
    );
    await policies.apply(`${POLICY}-own`, breaking.name, {
      namespaceSelector: {
        matchExpressions: [
          { key: 'kubernetes.io/metadata.name', operator: 'In', values: [breaking.name, bystander.name] },
        ],
      },
      mode: 'Enforce',
      observedLatency: { source: 'None' },
      readinessProbe: { verification: 'Trust' },
      rollout: { maxConcurrent: 1, progressDeadlineSeconds: 15 },
    });
    const held = await waitFor(
      "the tenant's namespace held",
      async () => {
        const s = await readPolicyStatus(adminKubeConfig(), `${POLICY}-own`);
        return s?.heldNamespaces?.includes(breaking.name) ? s : undefined;
      },
      { timeoutMs: 90_000 },
    );
    expect(held.conditions?.find((c) => c.type === 'RolloutBreakerOpen')).toMatchObject({
      status: 'False',
      reason: 'NamespacesHeld',
    });
    // Another team's Deployment arrives: enforced, within the budget.
    const started = Date.now();
    await kubectl(['apply', '-f', '-'], { input: webManifest(bystander.name, 'web', { replicas: 1 }) });
    await waitFor(
      "the other team's Deployment enforced",
      async () => {
        const d = await readDeployment(bystander.name, 'web');
        return (await operatorRecord(d))?.policy === `${POLICY}-own` ? d : undefined;
      },
      { timeoutMs: 60_000 },
    );
    console.log(
      `own rollout broken: ${breaking.name} held; the other team's Deployment enforced ${Date.now() - started} ms after it was created`,
    );
  });

  test('deleting its record frees no slot and restarts nothing: the operator writes the record back, metadata only', async () => {
    const honest = await readDeployment(attacker.name, 'honest');
    const template = JSON.stringify(honest.spec?.template);
    expect(
      await asTenant(['annotate', 'deployment', 'honest', '-n', attacker.name, `${APPLIED_ANNOTATION}-`]),
    ).toBe('');
    const back = await waitFor('the record written back', async () => {
      const d = await readDeployment(attacker.name, 'honest');
      return (await operatorRecord(d))?.policy === POLICY ? d : undefined;
    });
    expect(JSON.stringify(back.spec?.template)).toBe(template);
    expect(JSON.parse(back.metadata?.annotations?.[APPLIED_ANNOTATION] ?? '{}')).toHaveProperty('seal');
  });
});

describe('a flood of maximum-size AdmissionReviews at the webhook', () => {
  /** POSTs one AdmissionReview of about `bytes` to the operator's webhook; resolves with its status. */
  const post = (bytes: number): Promise<number> => {
    const review = JSON.stringify({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: {
        uid: 'flood',
        kind: { group: 'apps', version: 'v1', kind: 'Deployment' },
        resource: { group: 'apps', version: 'v1', resource: 'deployments' },
        operation: 'CREATE',
        namespace: flooded.name,
        userInfo: { username: 'system:serviceaccount:tenant-a:tenant' },
        object: {
          ...JSON.parse(webManifest(flooded.name, 'flood', { replicas: 1 })),
          metadata: { name: 'flood', namespace: flooded.name, annotations: { filler: 'x'.repeat(bytes) } },
        },
      },
    });
    return new Promise((resolve) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port: operator.webhookPort,
          path: MUTATE_DEPLOYMENTS_PATH,
          method: 'POST',
          rejectUnauthorized: false,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(review) },
          timeout: 30_000,
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', () => resolve(0));
      req.on('timeout', () => req.destroy());
      req.end(review);
    });
  };

  test('the operator stays under its memory limit, healthy and leading; real admissions are served during it', async () => {
    const ROUNDS = 4;
    const CONCURRENT = 24;
    const health: boolean[] = [];
    const healthProbe = setInterval(() => {
      fetch(`http://127.0.0.1:${operator.probePort}/healthz`).then(
        (r) => health.push(r.ok),
        () => health.push(false),
      );
    }, 200);
    const statuses: number[] = [];
    let served = 0;
    let mutated = 0;
    let sampled: { before: number; peak: number } = { before: 0, peak: 0 };
    try {
      sampled = await peakRssDuring(50, async () => {
        for (let round = 0; round < ROUNDS; round++) {
          const flood = Promise.all(Array.from({ length: CONCURRENT }, () => post(3.4 * 1024 * 1024)));
          // A real Deployment created through the apiserver meanwhile.
          const name = `real-${round}`;
          const created = await kubectl(['create', '-f', '-'], {
            input: webManifest(flooded.name, name, { replicas: 1 }),
          });
          if (created.code === 0) {
            served++;
            const d = await readDeployment(flooded.name, name);
            if (d.spec?.template.spec?.terminationGracePeriodSeconds === WANTED) mutated++;
          }
          statuses.push(...(await flood));
        }
      });
    } finally {
      clearInterval(healthProbe);
    }
    const { before, peak } = sampled;
    const counts = Object.entries(
      statuses.reduce<Record<string, number>>((acc, s) => {
        acc[s] = (acc[s] ?? 0) + 1;
        return acc;
      }, {}),
    );
    console.log(
      `flood: ${ROUNDS} x ${CONCURRENT} AdmissionReviews of 3.4 MiB; answers ${counts.map(([s, n]) => `${s}: ${n}`).join(', ')}; RSS ${before.toFixed(0)} -> peak ${peak.toFixed(0)} MiB (limit ${LIMIT_MIB}); /healthz ${health.filter(Boolean).length}/${health.length} ok; real admissions ${served}/${ROUNDS} served, ${mutated} mutated`,
    );
    expect(peak).toBeLessThan(LIMIT_MIB);
    expect(health.length).toBeGreaterThan(0);
    expect(health.every(Boolean)).toBe(true);
    expect(served).toBe(ROUNDS);
    expect(mutated).toBe(ROUNDS);
    expect(operator.exited).toBe(false);
    expect(await operator.sample('leader_election_master_status')).toBe(1);
  });
});
