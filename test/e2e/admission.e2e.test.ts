// The admission webhook against the real apiserver: the operator runs as a process (its
// ServiceAccount, the shipped RBAC) and the shipped MutatingWebhookConfiguration points at it by
// URL (only the address and the namespaces differ from config/webhook). The in-cluster case —
// the apiserver reaching the webhook through its Service — is in in-cluster.e2e.test.ts.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect } from 'node:tls';
import { AppsV1Api, CoreV1Api, type V1Deployment } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { APPLIED_ANNOTATION } from '../../operator/src/api/annotations.ts';
import { decodeSecretData } from '../../operator/src/webhook/certificates.ts';
import {
  OPERATOR_NAMESPACE,
  OPERATOR_USER,
  type OperatorProcess,
  readPolicyStatus,
  waitFor,
  webManifest,
} from '../operator/harness.ts';
import {
  adminKubeConfig,
  auditedDeploymentWrites,
  deleteWebhookConfiguration,
  installWebhookConfiguration,
  kubectl,
  operatorRecord,
  readDeployment,
  replicaSets,
  rolledOut,
  startOperatorProcess,
  useNamespace,
  usePolicies,
} from './support.ts';

const RESYNC_MS = 2_000;
const SECRET = 'graceful-shutdown-operator-webhook-tls';
const enforced = useNamespace('admission');
const audited = useNamespace('admission-audit');
const policies = usePolicies();
const kc = () => adminKubeConfig();
const apps = () => kc().makeApiClient(AppsV1Api);
const core = () => kc().makeApiClient(CoreV1Api);
const operatorArgs = [
  '--resync-ms',
  String(RESYNC_MS),
  '--rollout-check-ms',
  '500',
  '--log-level',
  'debug',
  // A configuration re-created by a test gets its caBundle again within this.
  '--webhook-check-ms',
  '1000',
];
const running: OperatorProcess[] = [];

async function startOperator(log: string, args: string[] = []): Promise<OperatorProcess> {
  const operator = await startOperatorProcess(log, [...operatorArgs, ...args]);
  running.push(operator);
  return operator;
}

/** The shipped configuration calling these operator processes, for this file's namespaces only. */
const installConfiguration = (operators: OperatorProcess[]) =>
  installWebhookConfiguration(operators, [enforced.name, audited.name]);

const manifest = (namespace: string, name: string, image?: string) =>
  webManifest(namespace, name, image === undefined ? {} : { image });

const webContainer = (d: V1Deployment) => d.spec?.template?.spec?.containers.find((c) => c.name === 'web');

/** Requests the operator's webhook answered, by operation: its histogram's _count. */
async function admissions(operator: OperatorProcess, operation: string): Promise<number> {
  const text = await operator.metrics();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (
      line.startsWith('gracefulshutdown_admission_duration_seconds_count{') &&
      line.includes(`operation="${operation}"`)
    )
      sum += Number(line.split(' ').at(-1));
  }
  return sum;
}

beforeAll(async () => {
  await kubectl(['-n', OPERATOR_NAMESPACE, 'delete', 'secret', SECRET, '--ignore-not-found']);
  const operator = await startOperator('operator-admission.log'); // installs the CRD and RBAC first
  await policies.apply('admission-enforce', enforced.name, {
    mode: 'Enforce',
    observedLatency: { source: 'None' },
  });
  await policies.apply('admission-audit', audited.name, {
    mode: 'Audit',
    observedLatency: { source: 'None' },
  });
  await installConfiguration([operator]);
});

afterAll(async () => {
  await deleteWebhookConfiguration();
  for (const operator of running.splice(0)) await operator.stop();
  // The next operator makes a Secret with the usual lifetimes (the rotation test shortened them).
  await kubectl(['-n', OPERATOR_NAMESPACE, 'delete', 'secret', SECRET, '--ignore-not-found']);
});

describe('Enforce: settings at admission', () => {
  test('kubectl apply of a new Deployment: compliant from its first ReplicaSet, and the operator never writes it', async () => {
    const ns = enforced.name;
    const applied = await kubectl(['apply', '-f', '-'], { input: manifest(ns, 'web') });
    expect(applied.code, applied.stderr).toBe(0);
    // kubectl shows what the webhook did.
    expect(applied.stderr).toContain(
      'Warning: gracefulshutdown.dev/admission-enforce (Enforce): containers[web].preStop: missing -> sleep 5s',
    );
    const created = await readDeployment(ns, 'web');
    expect(webContainer(created)?.lifecycle?.preStop).toEqual({ sleep: { seconds: 5 } });
    expect(webContainer(created)?.readinessProbe?.httpGet).toMatchObject({ path: '/readyz', port: 8080 });
    expect(await operatorRecord(created)).toMatchObject({ policy: 'admission-enforce' });
    expect((await operatorRecord(created))?.rollout).toBeUndefined();
    // The operator owns what it added, as if it had applied it.
    const entry = created.metadata?.managedFields?.find((e) => e.manager === 'graceful-shutdown-operator');
    expect(entry?.operation).toBe('Apply');
    await waitFor('rolled out', () => rolledOut(ns, 'web'));

    // Three resync periods: the controller looks at it again and again, and finds nothing to do.
    await new Promise((resolve) => setTimeout(resolve, 3 * RESYNC_MS + 1_000));
    const status = await waitFor('the policy reports it compliant', async () => {
      const s = await readPolicyStatus(kc(), 'admission-enforce');
      return s.counts?.compliant === 1 ? s : undefined;
    });
    expect(status.counts).toMatchObject({ matched: 1, compliant: 1, nonCompliant: 0 });
    expect(await replicaSets(ns, 'web')).toHaveLength(1);
    expect(auditedDeploymentWrites({ user: OPERATOR_USER, namespace: ns })).toBe(0);
    console.log(`one kubectl apply: 1 ReplicaSet after ${3 * RESYNC_MS + 1_000} ms, 0 operator writes`);

    // Applying the same manifest again (client-side, then server-side as GitOps tools do) keeps
    // the settings: the webhook's fields are the operator's, not in anyone's manifest.
    for (const args of [['apply'], ['apply', '--server-side']]) {
      const again = await kubectl([...args, '-f', '-'], { input: manifest(ns, 'web') });
      expect(again.code, again.stderr).toBe(0);
    }
    expect(webContainer(await readDeployment(ns, 'web'))?.lifecycle?.preStop).toEqual({
      sleep: { seconds: 5 },
    });
    expect(await replicaSets(ns, 'web')).toHaveLength(1);
    // And kubectl diff (a server-side dry run) sees no drift: exit code 0.
    const diff = await kubectl(['diff', '-f', '-'], { input: manifest(ns, 'web') });
    expect(diff.code, diff.stdout + diff.stderr).toBe(0);
  });

  test("naming the operator's field manager does not skip admission: only the operator's own user does", async () => {
    const ns = enforced.name;
    // The admin's write claims the operator's field manager, as any tenant could.
    const created = await kubectl(['create', '--field-manager', 'graceful-shutdown-operator', '-f', '-'], {
      input: manifest(ns, 'spoofed'),
    });
    expect(created.code, created.stderr).toBe(0);
    expect(created.stderr).toContain('containers[web].preStop: missing -> sleep 5s');
    expect(webContainer(await readDeployment(ns, 'spoofed'))?.lifecycle?.preStop).toEqual({
      sleep: { seconds: 5 },
    });
    // The operator learnt who it is from the apiserver.
    expect(readFileSync(running[0]?.logPath ?? '', 'utf8')).toContain(`"user":"${OPERATOR_USER}"`);
  });

  test('a scale is left alone; a new image gets the settings with it (one rollout)', async () => {
    const ns = enforced.name;
    const scaled = await kubectl(['-n', ns, 'scale', 'deployment/web', '--replicas=3']);
    expect(scaled.code, scaled.stderr).toBe(0);
    expect(scaled.stderr).not.toContain('Warning');
    const image = await kubectl(['-n', ns, 'set', 'image', 'deployment/web', 'web=registry.example/web:2']);
    expect(image.code, image.stderr).toBe(0);
    const after = await waitFor('rolled out', () => rolledOut(ns, 'web'));
    expect(webContainer(after)?.image).toBe('registry.example/web:2');
    expect(webContainer(after)?.lifecycle?.preStop).toEqual({ sleep: { seconds: 5 } });
    expect(await replicaSets(ns, 'web')).toHaveLength(2);
    expect(auditedDeploymentWrites({ user: OPERATOR_USER, namespace: ns })).toBe(0);
  });

  test('a server-side dry run of the manifest shows the mutated result (what GitOps diffs see)', async () => {
    const dry = await kubectl(['apply', '--dry-run=server', '-o', 'json', '-f', '-'], {
      input: manifest(enforced.name, 'not-created'),
    });
    expect(dry.code, dry.stderr).toBe(0);
    const shown = JSON.parse(dry.stdout) as V1Deployment;
    expect(webContainer(shown)?.lifecycle?.preStop).toEqual({ sleep: { seconds: 5 } });
    expect(shown.metadata?.annotations?.[APPLIED_ANNOTATION]).toBeDefined();
    const list = await apps().listNamespacedDeployment({ namespace: enforced.name });
    expect(list.items.map((d) => d.metadata?.name)).not.toContain('not-created');
  });
});

describe('Audit: warnings at admission', () => {
  test('kubectl apply prints what the policy recommends; the object is as written', async () => {
    const applied = await kubectl(['apply', '-f', '-'], { input: manifest(audited.name, 'web') });
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stderr).toContain(
      'Warning: gracefulshutdown.dev/admission-audit (Audit): containers[web].preStop: missing -> sleep 5s',
    );
    expect(applied.stderr).toMatch(/Warning: gracefulshutdown\.dev\/admission-audit \(Audit\): grace \d+ s/);
    console.log(`kubectl apply printed:\n${applied.stderr.trim()}`);
    const created = await readDeployment(audited.name, 'web');
    expect(webContainer(created)?.lifecycle).toBeUndefined();
    expect(webContainer(created)?.readinessProbe).toBeUndefined();
    expect(created.metadata?.annotations?.[APPLIED_ANNOTATION]).toBeUndefined();
  });
});

describe('a webhook that is down', () => {
  test('a hung webhook costs at most its timeout, and the object is admitted unchanged', async () => {
    const ns = enforced.name;
    const [operator] = running;
    // Frozen: it accepts connections (the kernel does) but never answers.
    operator?.child.kill('SIGSTOP');
    try {
      const started = Date.now();
      const applied = await kubectl(['apply', '-f', '-'], { input: manifest(ns, 'while-hung') });
      const elapsed = Date.now() - started;
      expect(applied.code, applied.stderr).toBe(0);
      console.log(`admitted with the webhook hung in ${elapsed} ms (timeoutSeconds 3, failurePolicy Ignore)`);
      expect(webContainer(await readDeployment(ns, 'while-hung'))?.lifecycle).toBeUndefined();
    } finally {
      operator?.child.kill('SIGCONT');
    }
  });

  test('never blocks a Deployment; the controller gives it its settings later', async () => {
    const ns = enforced.name;
    const [operator] = running.splice(0);
    await operator?.kill();
    const started = Date.now();
    const applied = await kubectl(['apply', '-f', '-'], { input: manifest(ns, 'while-down') });
    const elapsed = Date.now() - started;
    expect(applied.code, applied.stderr).toBe(0);
    console.log(`admitted with the webhook down in ${elapsed} ms (failurePolicy Ignore)`);
    const admitted = await readDeployment(ns, 'while-down');
    expect(webContainer(admitted)?.lifecycle).toBeUndefined(); // negative control: nobody mutated it
    await waitFor('rolled out unchanged', () => rolledOut(ns, 'while-down'));

    const restarted = await startOperator('operator-admission-2.log');
    await installConfiguration([restarted]);
    const patched = await waitFor(
      'the controller applied the settings',
      async () => {
        const d = await readDeployment(ns, 'while-down');
        return webContainer(d)?.lifecycle?.preStop ? d : undefined;
      },
      { timeoutMs: 60_000 },
    );
    expect((await operatorRecord(patched))?.rollout).toBeDefined(); // the operator's own, budgeted rollout
    await waitFor('rolled out', () => rolledOut(ns, 'while-down'));
    expect(await replicaSets(ns, 'while-down')).toHaveLength(2);
    expect(auditedDeploymentWrites({ user: OPERATOR_USER, namespace: ns })).toBeGreaterThan(0);
  });
});

describe('certificates', () => {
  /** The CA that issued what a replica serves, by its TLS handshake. */
  function servedIssuer(port: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
        const cert = socket.getPeerX509Certificate();
        socket.end();
        if (cert) resolve(cert.issuer);
        else reject(new Error('no certificate'));
      });
      socket.once('error', reject);
    });
  }

  async function secretState() {
    const secret = await core().readNamespacedSecret({ namespace: OPERATOR_NAMESPACE, name: SECRET });
    return decodeSecretData(secret.data);
  }

  test('short-lived certificates rotate (serving renewed, CA rotated with overlap) without one failed admission; a later replica serves the same CA', async () => {
    for (const operator of running.splice(0)) await operator.stop();
    await kubectl(['-n', OPERATOR_NAMESPACE, 'delete', 'secret', SECRET, '--ignore-not-found']);
    // Certificates start 60 s before they are made: CA to +90 s; serving to +40 s, renewed 15 s
    // before its end; a new CA published 10 s before it signs, the old one kept 10 s after.
    const short = [
      '--webhook-ca-validity-ms',
      '150000',
      '--webhook-serving-validity-ms',
      '100000',
      '--webhook-renew-before-ms',
      '15000',
      '--webhook-overlap-ms',
      '10000',
      '--webhook-check-ms',
      '1000',
    ];
    const first = await startOperator('operator-rotation-a.log', short);
    const initial = await secretState();
    // Both webhooks are called for every request: one per replica (the second joins later).
    await installConfiguration([first]);
    const t0 = Date.now();
    const timeline: string[] = [];
    let last = '';
    const observe = async () => {
      const state = await secretState();
      const caNotAfter = new X509Certificate(state.ca.cert).validTo;
      const servingNotAfter = new X509Certificate(state.serving.cert).validTo;
      const step = `CA ${new X509Certificate(state.ca.cert).subject.split('@')[1]} (to ${caNotAfter}), serving to ${servingNotAfter}${state.rotation ? `, old CA in bundle${state.rotation.servingSwitchedAt ? ', serving from new CA' : ''}` : ''}`;
      if (step !== last) timeline.push(`+${((Date.now() - t0) / 1000).toFixed(1)} s: ${step}`);
      last = step;
      return state;
    };

    let second: OperatorProcess | undefined;
    let sent = 0;
    let unmutated = 0;
    let before = { first: await admissions(first, 'CREATE'), second: 0 };
    while (Date.now() - t0 < 100_000) {
      const state = await observe();
      if (!second && Date.now() - t0 > 20_000) {
        second = await startOperator('operator-rotation-b.log', short);
        // A replica that starts later loads the Secret: the same CA.
        expect(await servedIssuer(second.webhookPort)).toBe(new X509Certificate(state.serving.cert).issuer);
        await installConfiguration([first, second]);
        before = { first: await admissions(first, 'CREATE'), second: await admissions(second, 'CREATE') };
        sent = 0;
        unmutated = 0;
      }
      const dry = await kubectl(['create', '--dry-run=server', '-o', 'json', '-f', '-'], {
        input: manifest(enforced.name, `rotation-${sent}`),
      });
      expect(dry.code, dry.stderr).toBe(0);
      sent++;
      if (!webContainer(JSON.parse(dry.stdout) as V1Deployment)?.lifecycle?.preStop) unmutated++;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const final = await observe();
    console.log(`rotation timeline:\n  ${timeline.join('\n  ')}`);
    console.log(`during rotation: ${sent} admissions through both replicas, ${unmutated} unmutated`);
    // failurePolicy Ignore hides a failed call: every dry run must show the mutation, and each
    // replica must have answered every one (a failed TLS handshake never reaches its handler).
    expect(unmutated).toBe(0);
    expect(second).toBeDefined();
    expect((await admissions(first, 'CREATE')) - before.first).toBe(sent);
    expect((await admissions(second as OperatorProcess, 'CREATE')) - before.second).toBe(sent);
    // It did rotate: a new CA, and serving certificates renewed more than once.
    expect(final.ca.cert).not.toBe(initial.ca.cert);
    expect(timeline.length).toBeGreaterThanOrEqual(4);
  }, 180_000);
});
