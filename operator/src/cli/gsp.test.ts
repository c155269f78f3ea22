import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  realpath,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import type { V1Deployment } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import { EXIT } from './gsp.ts';
import { type Manifest, readManifests } from './manifests.ts';
import { gspRun, shopPolicy } from './test-support.ts';

const here = import.meta.dirname;
const blogPost = join(here, 'testdata', 'blog-post.yaml');
const samples = join(here, '..', '..', '..', 'config', 'samples');
const kinds = join(here, 'testdata', 'kinds');

const gsp = gspRun;

const policy = shopPolicy;

/** An Audit policy for the workloads whose labels match `labels` (one matchLabels entry). */
const policyFor = (labels: string) => `apiVersion: gracefulshutdown.dev/v1alpha1
kind: GracefulShutdownPolicy
metadata: { name: shop }
spec:
  mode: Audit
  deploymentSelector: { matchLabels: { ${labels} } }
  observedLatency: { source: None }
`;

const bare = `apiVersion: apps/v1
kind: Deployment
metadata: { name: web, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
        - name: web
          image: registry.example/web:1
          ports: [{ containerPort: 8080 }]
`;

describe('gsp audit', () => {
  test("the blog post's mistake: terminationGracePeriodSeconds under the container, named with its fix and line", async () => {
    const out = await gsp(['audit', blogPost]);
    expect(out.code).toBe(EXIT.findings);
    expect(out.stdout).toContain('ERROR MisplacedTerminationGracePeriod Deployment shop/flask-app');
    expect(out.stdout).toContain(
      'spec.template.spec.containers[app].terminationGracePeriodSeconds: 20 is not a container field',
    );
    expect(out.stdout).toContain('fix: move it to spec.template.spec.terminationGracePeriodSeconds');
    expect(out.stdout).toContain(`${blogPost}:29:11`);
    expect(out.stdout).toContain('ERROR PreStopNotShorterThanGrace Deployment shop/static-site');
    expect(out.stdout).toContain('WARNING ShellPreStopWithoutShell Deployment shop/static-site');
  });

  test('every pod template is read (StatefulSet, DaemonSet, CronJob, Pod, Argo Rollout, an old Deployment); patches are checked as parts; the summary counts by kind', async () => {
    const out = await gsp(['audit', '-o', 'json', '-p', '-', kinds], policyFor('app.kubernetes.io/name: db'));
    const result = JSON.parse(out.stdout) as {
      workloads: { kind: string; apiVersion: string; name: string }[];
      findings: {
        rule: string;
        workload?: { kind: string; name: string };
        message: string;
        source: string;
      }[];
      inventory: { kind: string; apiVersion: string; read: number; partial: number; skipped: number }[];
    };
    expect(out.stderr).toBe('');
    expect(result.workloads.map((w) => `${w.kind} ${w.apiVersion} ${w.name}`).sort()).toEqual([
      'CronJob batch/v1 nightly-report',
      'DaemonSet apps/v1 node-exporter',
      'Deployment extensions/v1beta1 legacy',
      'Pod v1 debug',
      'Rollout argoproj.io/v1alpha1 rollouts-demo',
      'StatefulSet apps/v1 db',
    ]);
    const found = result.findings.map(
      (f) => `${f.rule} ${f.workload?.kind} ${f.workload?.name} ${relative(kinds, f.source)}`,
    );
    expect(found.sort()).toEqual(
      [
        // The CronJob: its preStop (sleep 40 first) outlasts 30 s; a grace on the job template's
        // spec. No readiness rule for a Job, though it declares a port.
        'MisplacedTerminationGracePeriod CronJob nightly-report cronjob.yaml',
        'PreStopNotShorterThanGrace CronJob nightly-report cronjob.yaml',
        'ReadinessProbeMissing DaemonSet node-exporter daemonset.yaml',
        'PreStopNotShorterThanGrace Deployment legacy old-deployment.yaml',
        // The patch is checked for what it sets: the grace period under its container.
        'MisplacedTerminationGracePeriod StatefulSet db overlay/grace-patch.yaml',
        'ShellPreStopWithoutShell Pod debug pod.yaml',
        'IdenticalReadinessAndLiveness Rollout rollouts-demo rollout.yaml',
        'MisplacedTerminationGracePeriod StatefulSet db statefulset.yaml',
        // The policy selects the StatefulSet's labels: a note that the operator will not act on it.
        'PolicyNotApplicable StatefulSet db statefulset.yaml',
        'ReadinessProbeMissing StatefulSet db statefulset.yaml',
      ].sort(),
    );
    const message = (rule: string, file: string) =>
      result.findings.find((f) => f.rule === rule && f.source.endsWith(file))?.message;
    expect(message('MisplacedTerminationGracePeriod', 'cronjob.yaml')).toBe(
      'spec.jobTemplate.spec.terminationGracePeriodSeconds: 120 is not a field of a Job spec; Kubernetes drops it (or rejects it with strict validation) and the pod keeps 30 s',
    );
    expect(message('MisplacedTerminationGracePeriod', 'grace-patch.yaml')).toContain(
      'the pod keeps the grace period of the object this patches',
    );
    expect(message('PolicyNotApplicable', 'statefulset.yaml')).toContain(
      'shop selects it by its labels, but the operator acts on Deployments only',
    );
    // The JSON 6902 patch (a list of operations) is not an input problem.
    expect(result.findings.filter((f) => f.rule.startsWith('Input'))).toEqual([]);
    const row = (kind: string, apiVersion: string) =>
      result.inventory.find((r) => r.kind === kind && r.apiVersion === apiVersion);
    expect(row('StatefulSet', 'apps/v1')).toMatchObject({ read: 1, partial: 1, skipped: 0 });
    expect(row('Deployment', 'apps/v1')).toMatchObject({ read: 0, partial: 1, skipped: 0 });
    expect(row('Rollout', 'argoproj.io/v1alpha1')).toMatchObject({ read: 1, skipped: 1 });
    expect(row('Service', 'v1')).toMatchObject({ read: 0, skipped: 1 });
    expect(row('Kustomization', 'kustomize.config.k8s.io/v1beta1')).toMatchObject({ skipped: 1 });

    const table = (await gsp(['audit', '-p', '-', kinds], policyFor('app.kubernetes.io/name: db'))).stdout;
    expect(table).toMatch(/^StatefulSet\s+shop\/db\s+-\s+-\s+-\s+/m);
    expect(table).toContain(
      'read: 1 CronJob batch/v1, 1 DaemonSet apps/v1, 1 Deployment extensions/v1beta1, 1 Pod v1, 1 Rollout argoproj.io/v1alpha1, 1 StatefulSet apps/v1',
    );
    expect(table).toContain(
      'partial (patches: checked for misplaced fields only): 1 Deployment apps/v1, 1 StatefulSet apps/v1',
    );
    expect(table).toContain(
      'skipped (no pod template): 1 Kustomization kustomize.config.k8s.io/v1beta1, 1 Rollout argoproj.io/v1alpha1, 1 Service v1',
    );
    expect(table).toContain('policy verdicts are for Deployments only: the operator acts on Deployments');
    expect(table).toContain('6 workloads (1 Deployments), 1 policies');
  });

  test('a directory walk reads inside it only: a symlink out, a FIFO and a cycle are notes; a FIFO named on the command line is read', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gsp-walk-'));
    const outside = await mkdtemp(join(tmpdir(), 'gsp-outside-'));
    let writer: ChildProcess | undefined;
    try {
      await writeFile(join(dir, 'a.yaml'), bare);
      await writeFile(join(outside, 'secret.yaml'), bare.replace('name: web,', 'name: outside,'));
      await symlink(join(outside, 'secret.yaml'), join(dir, 'out.yaml'));
      await symlink(dir, join(dir, 'loop'));
      await mkdir(join(dir, 'sub'));
      await writeFile(join(dir, 'sub', 'b.yaml'), bare.replace('name: web,', 'name: inside,'));
      await symlink(join(dir, 'sub', 'b.yaml'), join(dir, 'link-in.yaml'));
      execFileSync('mkfifo', [join(dir, 'pipe.yaml')]);
      const out = await gsp(['audit', '-o', 'json', dir]);
      const result = JSON.parse(out.stdout) as {
        workloads: { name: string; source: string }[];
        findings: { rule: string; source: string; message: string }[];
      };
      // Read: a.yaml, sub/b.yaml and the symlink to it inside the directory.
      expect(result.workloads.map((w) => relative(dir, w.source)).sort()).toEqual([
        'a.yaml',
        'link-in.yaml',
        'sub/b.yaml',
      ]);
      const skipped = result.findings.filter((f) => f.rule === 'InputSkipped');
      expect(skipped.map((f) => `${relative(dir, f.source)}: ${f.message}`).sort()).toEqual([
        `loop: not read: a directory already read (${await realpath(dir)})`,
        `out.yaml: not read: a symlink to ${await realpath(join(outside, 'secret.yaml'))}, outside ${dir}`,
        'pipe.yaml: not read: not a regular file (a FIFO, socket or device)',
      ]);
      expect(result.workloads.map((w) => w.name)).not.toContain('outside');
      // Named on the command line, a FIFO is read (as <(kustomize build) gives one).
      writer = spawn('sh', ['-c', `cat "$1" > "$2"`, 'sh', join(dir, 'a.yaml'), join(dir, 'pipe.yaml')]);
      const written = new Promise((done) => writer?.once('exit', done));
      const named = await gsp(['audit', '-o', 'json', join(dir, 'pipe.yaml')]);
      await written;
      expect(
        (JSON.parse(named.stdout) as { workloads: { name: string }[] }).workloads.map((w) => w.name),
      ).toEqual(['web']);
    } finally {
      // A writer still blocked on the FIFO (gsp failed before reading it) is stopped.
      if (writer?.exitCode === null) writer.kill();
      await rm(dir, { recursive: true, force: true });
      await rm(outside, { recursive: true, force: true });
    }
  });

  test("a Service's targetPort is evidence a container serves; an injected proxy is a sidecar, as the operator has it", async () => {
    const serving = join(here, 'testdata', 'serving.yaml');
    const result = JSON.parse((await gsp(['audit', '-o', 'json', serving])).stdout) as {
      findings: { rule: string; workload?: { name: string }; message: string }[];
    };
    const missing = result.findings.filter((f) => f.rule === 'ReadinessProbeMissing');
    // The model server behind a Service, though it declares no port; not the one without a
    // Service (negative control), and not the Istio proxy with its port.
    expect(missing.map((f) => f.workload?.name)).toEqual(['vllm']);
    expect(missing[0]?.message).toBe(
      'spec.template.spec.containers[vllm] declares no port, but Service vllm sends traffic to the pods (targetPort 8000), and it has no readiness probe',
    );
    // A Service in another namespace is no evidence.
    const elsewhere = (await readFile(serving, 'utf8')).replace(
      'metadata: { name: vllm, namespace: ml }\nspec:\n  selector: { app: vllm }',
      'metadata: { name: vllm, namespace: other }\nspec:\n  selector: { app: vllm }',
    );
    const moved = JSON.parse((await gsp(['audit', '-o', 'json', '-'], elsewhere)).stdout) as {
      findings: { rule: string }[];
    };
    expect(moved.findings.filter((f) => f.rule === 'ReadinessProbeMissing')).toEqual([]);
    // With a policy selecting the proxy's Deployment, the operator's verdict agrees: Compliant
    // as far as readiness goes (the proxy is not asked for a probe either).
    const governed = JSON.parse(
      (await gsp(['audit', '-o', 'json', '-p', '-', serving], policyFor('app: batch-scorer'))).stdout,
    ) as {
      workloads: { name: string; verdict?: string; reason?: string }[];
      findings: { rule: string; message: string }[];
    };
    const scorer = governed.workloads.find((w) => w.name === 'batch-scorer');
    expect(scorer?.verdict).toBe('NonCompliant');
    const policyFinding = governed.findings.find((f) => f.rule === 'PolicyNonCompliant');
    expect(policyFinding?.message).not.toContain('istio-proxy');
  });

  test('shells by image: distroless debug has BusyBox sh on its PATH only, Chainguard -dev has a shell, production Chainguard none', async () => {
    const hook = (image: string, command: string) =>
      bare
        .replace('registry.example/web:1', image)
        .replace(
          '          ports: [{ containerPort: 8080 }]\n',
          `          ports: [{ containerPort: 8080 }]\n          readinessProbe: { tcpSocket: { port: 8080 } }\n          lifecycle: { preStop: { exec: { command: [${command}, -c, "sleep 5"] } } }\n`,
        );
    const shellFindings = async (image: string, command: string) =>
      (
        JSON.parse((await gsp(['audit', '-o', 'json', '-'], hook(image, command))).stdout) as {
          findings: { rule: string; message: string }[];
        }
      ).findings
        .filter((f) => f.rule === 'ShellPreStopWithoutShell')
        .map((f) => f.message.replace(/^.*preStop runs /, ''));
    expect(await shellFindings('gcr.io/distroless/base-debian12:debug', 'sh')).toEqual([]);
    expect(await shellFindings('gcr.io/distroless/base-debian12:debug-nonroot', '/busybox/sh')).toEqual([]);
    expect(await shellFindings('gcr.io/distroless/base-debian12:debug', '/bin/sh')).toEqual([
      "/bin/sh, and gcr.io/distroless/base-debian12:debug is a distroless debug image: its only shell is BusyBox's, at /busybox/sh: the hook fails and the pod stops at once",
    ]);
    expect(await shellFindings('gcr.io/distroless/static-debian12:nonroot', 'sh')).toHaveLength(1);
    expect(await shellFindings('cgr.dev/chainguard/nginx:latest', '/bin/sh')).toHaveLength(1);
    expect(await shellFindings('cgr.dev/chainguard/nginx:latest-dev', '/bin/sh')).toEqual([]);
    expect(await shellFindings('docker.io/library/nginx:1.29', '/bin/sh')).toEqual([]);
  });

  test('a recommended readiness path is said to be unverified offline; a tcpSocket recommendation is not', async () => {
    const http = bare.replace(
      'ports: [{ containerPort: 8080 }]',
      'ports: [{ name: http, containerPort: 8080 }]',
    );
    const message = async (text: string) =>
      (
        JSON.parse((await gsp(['audit', '-o', 'json', '-'], `${policy('Audit')}---\n${text}`)).stdout) as {
          findings: { rule: string; message: string }[];
        }
      ).findings.find((f) => f.rule === 'PolicyNonCompliant')?.message;
    expect(await message(http)).toContain(
      '(not verified offline: GET /readyz on port 8080 of web; make sure the app answers it with 2xx, or name the path with the gracefulshutdown.dev/readiness-path annotation)',
    );
    expect(await message(bare)).not.toContain('not verified offline');
    // The operator's bookkeeping (its mirror annotations) is not the manifest's business.
    expect(await message(http)).toBe(
      'PreStopMissing: containers[web].readinessProbe: missing -> httpGet /readyz:8080; containers[web].preStop: missing -> sleep 5s (not verified offline: GET /readyz on port 8080 of web; make sure the app answers it with 2xx, or name the path with the gracefulshutdown.dev/readiness-path annotation)',
    );
  });

  test('identical readiness and liveness probes are named; different ones are not', async () => {
    const probes = (liveness: string) =>
      bare.replace(
        '          ports: [{ containerPort: 8080 }]\n',
        `          ports: [{ containerPort: 8080 }]\n          readinessProbe: { httpGet: { path: /health, port: 8080 } }\n          livenessProbe: { httpGet: { path: ${liveness}, port: 8080 } }\n`,
      );
    const rules = async (text: string) =>
      (
        JSON.parse((await gsp(['audit', '-o', 'json', '-'], text)).stdout) as { findings: { rule: string }[] }
      ).findings.map((f) => f.rule);
    expect(await rules(probes('/health'))).toContain('IdenticalReadinessAndLiveness');
    expect(await rules(probes('/healthz'))).not.toContain('IdenticalReadinessAndLiveness');
  });

  test('the grace period misplaced one or two levels up (Deployment spec, pod template) is named there too', async () => {
    const upOne = bare.replace(
      'spec:\n  selector:',
      'spec:\n  terminationGracePeriodSeconds: 60\n  selector:',
    );
    const upTwo = bare.replace(
      '    metadata: { labels: { app: web } }\n',
      '    metadata: { labels: { app: web } }\n    terminationGracePeriodSeconds: 60\n',
    );
    const messages = async (text: string) =>
      (
        JSON.parse((await gsp(['audit', '-o', 'json', '-'], text)).stdout) as {
          findings: { rule: string; message: string }[];
        }
      ).findings
        .filter((f) => f.rule === 'MisplacedTerminationGracePeriod')
        .map((f) => f.message);
    expect(await messages(upOne)).toEqual([
      'spec.terminationGracePeriodSeconds: 60 is not a field of a Deployment spec; Kubernetes drops it (or rejects it with strict validation) and the pod keeps 30 s',
    ]);
    expect(await messages(upTwo)).toEqual([
      'spec.template.terminationGracePeriodSeconds: 60 is not a field of a pod template; Kubernetes drops it (or rejects it with strict validation) and the pod keeps 30 s',
    ]);
    // Negative control: in its place, no finding.
    expect(
      await messages(
        bare.replace(
          '    spec:\n      containers:',
          '    spec:\n      terminationGracePeriodSeconds: 60\n      containers:',
        ),
      ),
    ).toEqual([]);
  });

  test('from standard input, with a policy: the verdict the operator would give, and its exit code', async () => {
    const out = await gsp(['audit', '-'], `${policy('Audit')}---\n${bare}`);
    expect(out.code).toBe(EXIT.findings);
    expect(out.stdout).toMatch(/shop\/web\s+shop\s+NonCompliant\s+PreStopMissing\s+-:9/);
    expect(out.stdout).toContain('containers[web].preStop: missing -> sleep 5s');
    // A policy governs it: the probe is part of the verdict, not a second finding.
    expect(out.stdout).not.toContain('ReadinessProbeMissing');
  });

  test('a compliant Deployment exits 0; --fail-on warning makes warnings count', async () => {
    const fixed = bare.replace(
      'ports: [{ containerPort: 8080 }]',
      `ports: [{ containerPort: 8080 }]
          readinessProbe: { httpGet: { path: /readyz, port: 8080 } }
          lifecycle: { preStop: { sleep: { seconds: 5 } } }`,
    );
    expect((await gsp(['audit', '-'], `${policy('Enforce')}---\n${fixed}`)).code).toBe(EXIT.ok);
    const unpoliced = await gsp(['audit', '-'], fixed.replace('readinessProbe', 'startupProbe'));
    expect(unpoliced.code).toBe(EXIT.ok); // a warning only
    expect(
      (await gsp(['audit', '--fail-on', 'warning', '-'], fixed.replace('readinessProbe', 'startupProbe')))
        .code,
    ).toBe(EXIT.findings);
  });

  test('Lists (kubectl get -o yaml) are read item by item', async () => {
    const list = `apiVersion: v1
kind: List
items:
  - ${bare.trim().split('\n').join('\n    ')}
`;
    const out = await gsp(['audit', '-o', 'json', '-'], list);
    expect(JSON.parse(out.stdout).workloads).toEqual([
      { kind: 'Deployment', apiVersion: 'apps/v1', namespace: 'shop', name: 'web', source: '-', line: 4 },
    ]);
  });

  test('SARIF 2.1.0 for code scanning: rules, levels, file and line', async () => {
    const out = await gsp(['audit', '-o', 'sarif', blogPost]);
    const log = JSON.parse(out.stdout);
    expect(log.version).toBe('2.1.0');
    const [run0] = log.runs;
    expect(run0.tool.driver.rules.map((r: { id: string }) => r.id)).toContain(
      'MisplacedTerminationGracePeriod',
    );
    expect(run0.results[0]).toMatchObject({
      ruleId: 'MisplacedTerminationGracePeriod',
      level: 'error',
      locations: [
        {
          physicalLocation: {
            // Relative to the working directory by default.
            artifactLocation: { uri: relative(process.cwd(), blogPost), uriBaseId: 'SRCROOT' },
            // The field itself: the container's terminationGracePeriodSeconds key.
            region: { startLine: 29, startColumn: 11 },
          },
        },
      ],
    });
  });

  test('SARIF locations: relative to --sarif-base and percent-encoded, a file URI outside it, standard input by --stdin-name', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gsp sarif #'));
    try {
      const file = join(dir, 'a b#c.yaml');
      await writeFile(file, await readFile(blogPost, 'utf8'));
      const sarif = async (args: string[], stdin = '') => {
        const log = JSON.parse((await gsp(['audit', '-o', 'sarif', ...args], stdin)).stdout);
        return log.runs[0] as {
          originalUriBaseIds: Record<string, { uri: string }>;
          results: {
            locations: { physicalLocation: { artifactLocation: { uri: string; uriBaseId?: string } } }[];
          }[];
        };
      };
      const inside = await sarif(['--sarif-base', dir, file]);
      expect(inside.results[0]?.locations[0]?.physicalLocation.artifactLocation).toEqual({
        uri: 'a%20b%23c.yaml',
        uriBaseId: 'SRCROOT',
      });
      expect(inside.originalUriBaseIds.SRCROOT?.uri).toBe(
        `file://${dir.replaceAll(' ', '%20').replaceAll('#', '%23')}/`,
      );
      // Outside the base: an absolute file URI, encoded as well.
      const outside = await sarif(['--sarif-base', here, file]);
      expect(outside.results[0]?.locations[0]?.physicalLocation.artifactLocation.uri).toMatch(
        /^file:\/\/.*a%20b%23c\.yaml$/,
      );
      // Standard input, by the name the pipeline gives it.
      const piped = await sarif(
        ['--sarif-base', dir, '--stdin-name', 'rendered/all.yaml', '-'],
        await readFile(blogPost, 'utf8'),
      );
      expect(piped.results[0]?.locations[0]?.physicalLocation.artifactLocation).toEqual({
        uri: 'rendered/all.yaml',
        uriBaseId: 'SRCROOT',
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('the table prints control characters of names escaped: no line of its own for a name', async () => {
    const hostile = bare.replace('name: web,', 'name: "web\\n::error::pwned\\u001b[31m",');
    const { stdout } = await gsp(['audit', '-'], hostile);
    expect(stdout).toContain('web\\n::error::pwned\\u001b[31m');
    expect(stdout.split('\n').some((line) => line.startsWith('::error::'))).toBe(false);
    expect(stdout).not.toContain('\u001b');
  });

  test('no Kubernetes object at all (an empty directory, an empty stream) exits 3, saying so', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gsp-empty-'));
    try {
      expect(await gsp(['audit', dir])).toMatchObject({
        code: EXIT.input,
        stderr: `gsp: no Kubernetes objects in ${dir}\n`,
      });
      expect(await gsp(['audit', '-'], '')).toMatchObject({
        code: EXIT.input,
        stderr: 'gsp: no Kubernetes objects in standard input\n',
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('the repository samples are valid policies and a directory is read whole', async () => {
    const out = await gsp(['audit', samples]);
    expect(out.code, out.stderr).toBe(EXIT.ok);
    expect(out.stdout).toContain('0 workloads (0 Deployments), 5 policies');
  });

  test('usage errors exit 2, unreadable input 3, each naming what is wrong', async () => {
    expect(await gsp(['audit'])).toMatchObject({
      code: EXIT.usage,
      stderr: expect.stringContaining('name at least one file'),
    });
    expect(await gsp(['audit', '-o', 'xml', blogPost])).toMatchObject({
      code: EXIT.usage,
      stderr: expect.stringContaining('--output'),
    });
    expect(await gsp(['lint', blogPost])).toMatchObject({
      code: EXIT.usage,
      stderr: expect.stringContaining('unknown command lint'),
    });
    expect(await gsp(['audit', '/nonexistent.yaml'])).toMatchObject({
      code: EXIT.input,
      stderr: expect.stringContaining('/nonexistent.yaml:0: cannot read: ENOENT'),
    });
    expect(await gsp(['audit', '-'], 'a: [\n')).toMatchObject({
      code: EXIT.input,
      stderr: expect.stringMatching(/^gsp: -:\d+: /),
    });
    const badPolicy = policy('Audit').replace('mode: Audit', 'mode: Sometimes');
    expect(await gsp(['audit', '-'], badPolicy)).toMatchObject({
      code: EXIT.input,
      stderr: expect.stringContaining('policy shop: spec.mode'),
    });
  });

  test('a bad file is a finding, not the end: the run goes on and audits the rest', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gsp-bad-'));
    try {
      await writeFile(join(dir, 'a-good.yaml'), bare);
      // A data file among the manifests, a Helm template, a key given twice (kubectl: last wins).
      await writeFile(join(dir, 'b-data.json'), '[1, 2, 3]\n');
      await writeFile(
        join(dir, 'c-template.yaml'),
        'apiVersion: v1\nkind: ConfigMap\ndata:\n  a: {{ .Values.a }\n',
      );
      // A preStop of 45 s: with the grace's first value (30 s) a finding, with its last (90 s) none.
      const withPreStop = (name: string, grace: string) =>
        bare
          .replace('name: web,', `name: ${name},`)
          .replace('    spec:\n      containers:', `    spec:\n${grace}      containers:`)
          .replace(
            '          ports: [{ containerPort: 8080 }]\n',
            '          ports: [{ containerPort: 8080 }]\n          lifecycle: { preStop: { sleep: { seconds: 45 } } }\n',
          );
      await writeFile(
        join(dir, 'd-twice.yaml'),
        withPreStop(
          'twice',
          '      terminationGracePeriodSeconds: 30\n      terminationGracePeriodSeconds: 90\n',
        ),
      );
      await writeFile(
        join(dir, 'f-once.yaml'),
        withPreStop('once', '      terminationGracePeriodSeconds: 30\n'),
      );
      // Malformed Deployments: containers a mapping; a null item.
      await writeFile(
        join(dir, 'e-malformed.yaml'),
        `${bare.replace('name: web,', 'name: mapping,').replace('      containers:\n        - name: web', '      containers:\n        web:\n          name: web')}---\n${bare.replace('name: web,', 'name: nullitem,').replace('      containers:\n', '      containers:\n        - null\n')}`,
      );
      const warnings: unknown[] = [];
      const onWarning = (w: unknown) => warnings.push(w);
      process.on('warning', onWarning);
      const { code, stdout, stderr } = await gsp(['audit', '-o', 'json', dir]);
      process.off('warning', onWarning);
      expect(stderr).toBe('');
      expect(warnings).toEqual([]);
      const result = JSON.parse(stdout) as {
        workloads: { name: string }[];
        findings: { rule: string; source: string; line: number; message: string }[];
      };
      // Audited: the good ones and the one with a key twice.
      expect(result.workloads.map((w) => w.name).sort()).toEqual(['once', 'twice', 'web']);
      const byRule = (rule: string) => result.findings.filter((f) => f.rule === rule);
      expect(byRule('InputNotAnObject')).toMatchObject([{ source: join(dir, 'b-data.json'), line: 1 }]);
      expect(byRule('InputInvalidYaml')).toMatchObject([{ source: join(dir, 'c-template.yaml') }]);
      expect(byRule('InputDuplicateKey')).toMatchObject([{ source: join(dir, 'd-twice.yaml') }]);
      expect(byRule('InputMalformedWorkload').map((f) => f.message)).toEqual([
        'Deployment mapping: spec.template.spec.containers is not what Kubernetes takes there',
        'Deployment nullitem: spec.template.spec.containers[0] is not what Kubernetes takes there',
      ]);
      // The last value read (90 s > 45 s): no finding; negative control, 30 s alone: one.
      const preStopTooLong = byRule('PreStopNotShorterThanGrace').map((f) => f.source);
      expect(preStopTooLong).toEqual([join(dir, 'f-once.yaml')]);
      // Errors among them: exit 1, as for any finding at --fail-on error.
      expect(code).toBe(EXIT.findings);
      // SARIF carries them with their rule and a line of at least 1.
      const sarif = JSON.parse((await gsp(['audit', '-o', 'sarif', dir])).stdout) as {
        runs: {
          results: { ruleId: string; locations: { physicalLocation: { region: { startLine: number } } }[] }[];
        }[];
      };
      const results = sarif.runs[0]?.results ?? [];
      expect(results.map((r) => r.ruleId)).toEqual(
        expect.arrayContaining(['InputInvalidYaml', 'InputNotAnObject']),
      );
      for (const r of results)
        expect(r.locations[0]?.physicalLocation.region.startLine).toBeGreaterThanOrEqual(1);
      // --strict: any unreadable part is an input error.
      expect(await gsp(['audit', '--strict', dir])).toMatchObject({
        code: EXIT.input,
        stderr: expect.stringContaining('c-template.yaml'),
      });
      // A missing path among readable ones is a finding too; alone, nothing to audit: exit 3.
      const partly = await gsp(['audit', '-o', 'json', join(dir, 'a-good.yaml'), join(dir, 'nope.yaml')]);
      expect(JSON.parse(partly.stdout).findings).toEqual(
        expect.arrayContaining([
          expect.objectContaining({
            rule: 'InputUnreadable',
            message: 'cannot read: ENOENT (no such file or directory)',
          }),
        ]),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('--fix moves the misplaced grace period in the file, keeping its comments and layout', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gsp-fix-'));
    try {
      const file = join(dir, 'app.yaml');
      await writeFile(file, await readFile(blogPost, 'utf8'));
      const out = await gsp(['audit', '--fix', '--fail-on', 'none', file]);
      expect(out.stderr).toContain(
        'fixed Deployment shop/flask-app (' +
          file +
          '): moved terminationGracePeriodSeconds 20 from containers[app] to the pod spec',
      );
      const text = await readFile(file, 'utf8');
      expect(text).toContain('# grace period of 20 s -- under the container, where Kubernetes ignores it.');
      expect(text).toContain('command: ["sleep", "5"]');
      const [fixed] = readManifests(text, file);
      const spec = ((fixed as Manifest).object as { spec: { template: { spec: Record<string, unknown> } } })
        .spec.template.spec;
      expect(spec.terminationGracePeriodSeconds).toBe(20);
      expect((spec.containers as Record<string, unknown>[])[0]).not.toHaveProperty(
        'terminationGracePeriodSeconds',
      );
      expect(out.stdout).not.toContain('MisplacedTerminationGracePeriod');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('--fix writes atomically through a symlink inside the directory, keeps the mode, and leaves what it cannot edit safely as it was', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gsp-fix-safe-'));
    try {
      const misplaced = bare.replace(
        '          ports: [{ containerPort: 8080 }]\n',
        '          ports: [{ containerPort: 8080 }]\n          terminationGracePeriodSeconds: 40\n',
      );
      await mkdir(join(dir, 'real'));
      await writeFile(join(dir, 'real', 'app.yaml'), misplaced, { mode: 0o640 });
      await symlink(join(dir, 'real', 'app.yaml'), join(dir, 'link.yaml'));
      // Not UTF-8 (a Latin-1 byte in a comment), and a key given twice: neither is rewritten.
      const latin1 = Buffer.concat([
        Buffer.from('# caf'),
        Buffer.from([0xe9]),
        Buffer.from(`\n${misplaced}`),
      ]);
      await writeFile(join(dir, 'latin1.yaml'), latin1);
      const twice = misplaced.replace('kind: Deployment\n', 'kind: Deployment\nkind: Deployment\n');
      await writeFile(join(dir, 'twice.yaml'), twice);
      const out = await gsp([
        'audit',
        '--fix',
        '--fail-on',
        'none',
        join(dir, 'link.yaml'),
        join(dir, 'latin1.yaml'),
        join(dir, 'twice.yaml'),
      ]);
      expect(out.stderr).toContain(
        `fixed Deployment shop/web (${join(dir, 'link.yaml')}): moved terminationGracePeriodSeconds 40`,
      );
      expect(out.stderr).toContain(`not fixed (${join(dir, 'twice.yaml')}): a key is given twice`);
      // The symlink is still a symlink; its target has the fix and its mode.
      expect((await lstat(join(dir, 'link.yaml'))).isSymbolicLink()).toBe(true);
      const written = await readFile(join(dir, 'real', 'app.yaml'), 'utf8');
      expect(written).toContain('      terminationGracePeriodSeconds: 40\n');
      expect((await stat(join(dir, 'real', 'app.yaml'))).mode & 0o777).toBe(0o640);
      // No temporary file is left beside it.
      expect(await readdir(join(dir, 'real'))).toEqual(['app.yaml']);
      expect(await readFile(join(dir, 'latin1.yaml'))).toEqual(latin1);
      expect(await readFile(join(dir, 'twice.yaml'), 'utf8')).toBe(twice);
      const { findings } = JSON.parse(
        (await gsp(['audit', '-o', 'json', join(dir, 'latin1.yaml'), join(dir, 'twice.yaml')])).stdout,
      ) as { findings: { rule: string; source: string }[] };
      expect(findings.filter((f) => f.rule.startsWith('Input'))).toMatchObject([
        { rule: 'InputInvalidYaml', message: 'not valid UTF-8', line: 1, source: join(dir, 'latin1.yaml') },
        { rule: 'InputDuplicateKey', source: join(dir, 'twice.yaml') },
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('--fix edits a List item by item, and a JSON file stays JSON with only the changed lines moved', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gsp-fix-json-'));
    try {
      const item = (name: string) => ({
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name, namespace: 'shop' },
        spec: {
          selector: { matchLabels: { app: name } },
          template: {
            metadata: { labels: { app: name } },
            spec: { containers: [{ name, image: 'x', terminationGracePeriodSeconds: 45 }] },
          },
        },
      });
      const before = `${JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [item('a'), item('b')] }, null, 2)}\n`;
      await writeFile(join(dir, 'list.json'), before);
      const out = await gsp(['audit', '--fix', join(dir, 'list.json')]);
      expect(out.code).toBe(EXIT.ok);
      expect(out.stderr.split('\n').filter((l) => l.startsWith('fixed'))).toHaveLength(2);
      const after = await readFile(join(dir, 'list.json'), 'utf8');
      const parsed = JSON.parse(after) as { items: ReturnType<typeof item>[] };
      for (const d of parsed.items) {
        expect(d.spec.template.spec).toMatchObject({ terminationGracePeriodSeconds: 45 });
        expect(d.spec.template.spec.containers[0]).not.toHaveProperty('terminationGracePeriodSeconds');
      }
      // Every line of the result but the moved ones (and the commas they need) is a line of before.
      const old = new Set(before.split('\n'));
      const moved = [
        '                "image": "x"',
        '            ],',
        '            "terminationGracePeriodSeconds": 45',
      ];
      expect(after.split('\n').filter((l) => !old.has(l))).toEqual([...moved, ...moved]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("--fix on standard input prints the corrected stream with the policy's settings; what is left is reported on stderr", async () => {
    const out = await gsp(['audit', '--fix', '-'], `${policy('Enforce')}---\n${bare}`);
    expect(out.code).toBe(EXIT.ok);
    const [, deployment] = readManifests(out.stdout, '-');
    const web = ((deployment as Manifest).object as V1Deployment).spec?.template.spec?.containers[0];
    expect(web?.lifecycle?.preStop).toEqual({ sleep: { seconds: 5 } });
    // Offline no pod can be asked, and the unnamed port says nothing of HTTP: tcpSocket.
    expect(web?.readinessProbe).toMatchObject({ tcpSocket: { port: 8080 } });
    expect(web?.readinessProbe?.httpGet).toBeUndefined();
    expect(out.stderr).toContain(
      'fixed Deployment shop/web (-): containers[web].preStop: missing -> sleep 5s (policy shop)',
    );
    expect(out.stderr).toMatch(/shop\/web\s+shop\s+Compliant/);
  });
});
