// gsp audit on inputs written to break it (found by a review): each is a finding or a refusal,
// never a crash, a hang, a lost workload or a damaged file.
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { EXIT, MAX_INPUT_BYTES } from './gsp.ts';
import { gspRun as gsp, shopPolicy } from './test-support.ts';

interface Result {
  workloads: { name: string; kind: string }[];
  findings: { rule: string; line: number; column?: number; message: string; source: string }[];
}
const json = (stdout: string) => JSON.parse(stdout) as Result;

const deployment = (containerExtra = '', podExtra = '') => `apiVersion: apps/v1
kind: Deployment
metadata: { name: web, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
${podExtra}      containers:
        - name: app
          image: registry.example/app:1
${containerExtra}`;

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gsp-hostile-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('reading', () => {
  test('aliases: many are a finding, an exponential alias bomb is refused (not expanded), neither crashes', async () => {
    const many = `${deployment()}x: &v 1\ny: [${Array(101).fill('*v').join(', ')}]\n`;
    // Alone on standard input, nothing is left to audit: exit 3, one line saying why.
    const out = await gsp(['audit', '-o', 'json', '-'], many);
    expect(out).toMatchObject({ code: EXIT.input, stdout: '' });
    expect(out.stderr).toMatch(
      /^gsp: -:1: not read: Excessive alias count indicates a resource exhaustion attack\n$/,
    );
    // Nine levels of nine aliases each: 9^9 nodes when expanded.
    const levels = Array.from({ length: 9 }, (_, i) =>
      i === 0
        ? 'a0: &a0 [x, x, x, x, x, x, x, x, x]'
        : `a${i}: &a${i} [${Array(9)
            .fill(`*a${i - 1}`)
            .join(', ')}]`,
    );
    const bomb = deployment(
      '          readinessProbe: { exec: { command: [x] }, x: *a8 }\n          livenessProbe: { exec: { command: [x] }, x: *a8 }\n',
    ).replace('spec:\n  selector', `${levels.join('\n')}\nspec:\n  selector`);
    // Beside a readable document, the run goes on and the bomb is a finding.
    const bombed = await gsp(
      ['audit', '-o', 'json', '-'],
      `${bomb}---\n${deployment().replace('name: web,', 'name: other,')}`,
    );
    expect(json(bombed.stdout).findings.map((f) => f.rule)).toEqual(['InputInvalidYaml']);
    expect(json(bombed.stdout).findings[0]?.message).toMatch(/resource exhaustion/);
    expect(json(bombed.stdout).workloads.map((w) => w.name)).toEqual(['other']);
  });

  test('U+2028 and U+2029 are content in YAML, not line ends: no document split, no kind faked', async () => {
    const split = deployment('          terminationGracePeriodSeconds: 60\n').replace(
      'metadata: { name: web, namespace: shop }',
      'metadata:\n  name: web # team-a\u2028---\n  namespace: shop',
    );
    const read = json((await gsp(['audit', '-o', 'json', '-'], split)).stdout);
    expect(read.workloads.map((w) => w.name)).toEqual(['web']);
    expect(read.findings.map((f) => f.rule)).toEqual(['MisplacedTerminationGracePeriod']);
    const faked = deployment('          terminationGracePeriodSeconds: 60\n').replace(
      'kind: Deployment',
      'kind: Deployment # \u2029kind: ConfigMap',
    );
    expect(json((await gsp(['audit', '-o', 'json', '-'], faked)).stdout).workloads).toHaveLength(1);
  });

  test('a document after a `...` end marker is read, without a `---`', async () => {
    const text = `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n...\n{apiVersion: apps/v1, kind: Deployment, metadata: {name: web}, spec: {template: {spec: {containers: [{name: app, image: nginx, terminationGracePeriodSeconds: 60}]}}}}\n`;
    const read = json((await gsp(['audit', '-o', 'json', '-'], text)).stdout);
    expect(read.workloads.map((w) => w.name)).toEqual(['web']);
    expect(read.findings.map((f) => `${f.rule}:${f.line}`)).toEqual(['MisplacedTerminationGracePeriod:5']);
  });

  test('with a key given twice, the finding points at the occurrence kubectl reads (the last)', async () => {
    const text = `${deployment()}        - name: old\n          image: x\n`.replace(
      '      containers:\n',
      '      containers:\n        - name: ignored\n          image: y\n      containers:\n',
    );
    const twice = text.replace(
      '          image: registry.example/app:1\n',
      '          image: registry.example/app:1\n          terminationGracePeriodSeconds: 60\n',
    );
    const found = json((await gsp(['audit', '-o', 'json', '-'], twice)).stdout).findings;
    const misplaced = found.find((f) => f.rule === 'MisplacedTerminationGracePeriod');
    expect(twice.split('\n')[(misplaced?.line ?? 0) - 1]).toBe('          terminationGracePeriodSeconds: 60');
  });
});

describe('walking a directory', () => {
  test('a FIFO named kustomization.yaml is not read (no hang); a dangling symlink that names no manifest is ignored', async () => {
    await writeFile(join(dir, 'app.yaml'), deployment());
    execFileSync('mkfifo', [join(dir, 'kustomization.yaml')]);
    await symlink('/nonexistent', join(dir, 'current'));
    const out = await gsp(['audit', '-o', 'json', dir]);
    const read = json(out.stdout);
    expect(read.workloads.map((w) => w.name)).toEqual(['web']);
    expect(
      read.findings.filter((f) => f.rule.startsWith('Input')).map((f) => `${f.rule} ${f.source}`),
    ).toEqual([`InputSkipped ${join(dir, 'kustomization.yaml')}`]);
  });

  test('nothing audited, only notes (a symlink out of the directory): exit 3, saying why', async () => {
    const outside = await mkdtemp(join(tmpdir(), 'gsp-hostile-out-'));
    try {
      await writeFile(join(outside, 'app.yaml'), deployment());
      await mkdir(join(dir, 'deploy'));
      await symlink(join(outside, 'app.yaml'), join(dir, 'deploy', 'app.yaml'));
      const out = await gsp(['audit', join(dir, 'deploy')]);
      expect(out.code).toBe(EXIT.input);
      expect(out.stderr).toContain('outside');
      expect(out.stderr).toContain('no Kubernetes objects');
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });
});

describe('size', () => {
  test('an input larger than 64 MiB is not read: a file by its size, standard input as it arrives', async () => {
    await writeFile(join(dir, 'app.yaml'), deployment());
    await writeFile(join(dir, 'huge.yaml'), '');
    await truncate(join(dir, 'huge.yaml'), MAX_INPUT_BYTES + 1); // sparse: no disk, no memory
    const read = json((await gsp(['audit', '-o', 'json', dir])).stdout);
    expect(read.workloads.map((w) => w.name)).toEqual(['web']);
    expect(read.findings.filter((f) => f.rule.startsWith('Input'))).toMatchObject([
      {
        rule: 'InputUnreadable',
        source: join(dir, 'huge.yaml'),
        message: 'cannot read: EFBIG (larger than 64 MiB)',
      },
    ]);
    const stdin = await gsp(['audit', '-'], `${deployment()}# ${'x'.repeat(MAX_INPUT_BYTES)}\n`);
    expect(stdin).toMatchObject({
      code: EXIT.input,
      stderr: 'gsp: -:0: cannot read: EFBIG (larger than 64 MiB)\n',
    });
  });
});

describe('--fix', () => {
  const policy = shopPolicy('Audit');

  test('JSON stays JSON when the value goes into an empty {}', async () => {
    const object = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'web', namespace: 'shop' },
      spec: {
        selector: { matchLabels: { app: 'web' } },
        template: {
          metadata: { labels: { app: 'web' } },
          spec: {
            containers: [
              { name: 'app', image: 'x', ports: [{ containerPort: 8080, name: 'http' }], lifecycle: {} },
            ],
          },
        },
      },
    };
    await writeFile(join(dir, 'app.json'), `${JSON.stringify(object, null, 2)}\n`);
    await writeFile(join(dir, 'policy.yaml'), policy);
    const out = await gsp(['audit', '--fix', '-p', join(dir, 'policy.yaml'), join(dir, 'app.json')]);
    expect(out.stderr).toContain('preStop');
    const fixed = JSON.parse(await readFile(join(dir, 'app.json'), 'utf8')) as typeof object;
    expect(fixed.spec.template.spec.containers[0]?.lifecycle).toEqual({ preStop: { sleep: { seconds: 5 } } });
  });

  test("a container's first key removed keeps the comments below it", async () => {
    const text = deployment().replace(
      '        - name: app\n          image: registry.example/app:1\n',
      '        - terminationGracePeriodSeconds: 45\n          # IMPORTANT: keep this image pinned\n          name: app\n          image: registry.example/app:1\n',
    );
    await writeFile(join(dir, 'app.yaml'), text);
    const out = await gsp(['audit', '--fix', join(dir, 'app.yaml')]);
    expect(out.stderr).toContain('moved terminationGracePeriodSeconds 45');
    const fixed = await readFile(join(dir, 'app.yaml'), 'utf8');
    expect(fixed).toContain('# IMPORTANT: keep this image pinned');
    expect(fixed).toContain('      terminationGracePeriodSeconds: 45\n');
  });

  test('a grace period that is not a number is left for a person; a null pod value is unset', async () => {
    await writeFile(join(dir, 'quoted.yaml'), deployment('          terminationGracePeriodSeconds: "60"\n'));
    const out = await gsp(['audit', '--fix', '--fail-on', 'none', join(dir, 'quoted.yaml')]);
    expect(out.stderr).toContain(
      'not fixed (' +
        join(dir, 'quoted.yaml') +
        '): Deployment shop/web: containers[app].terminationGracePeriodSeconds is "60", not a number of seconds: move it by hand',
    );
    expect(await readFile(join(dir, 'quoted.yaml'), 'utf8')).toContain('terminationGracePeriodSeconds: "60"');
    const nulled = deployment(
      '          terminationGracePeriodSeconds: 60\n',
      '      terminationGracePeriodSeconds:\n',
    );
    const findings = json((await gsp(['audit', '-o', 'json', '-'], nulled)).stdout).findings;
    expect(findings[0]?.message).toMatch(/the pod keeps 30 s$/);
  });

  test('a kustomize patch gets the misplaced-field fix, never a policy setting', async () => {
    await mkdir(join(dir, 'overlay'));
    await writeFile(
      join(dir, 'overlay', 'kustomization.yaml'),
      'resources: [../base]\npatches:\n  - path: patch.yaml\n',
    );
    await writeFile(
      join(dir, 'overlay', 'patch.yaml'),
      deployment('          terminationGracePeriodSeconds: 45\n'),
    );
    await writeFile(join(dir, 'policy.yaml'), policy);
    const out = await gsp([
      'audit',
      '--fix',
      '--fail-on',
      'none',
      '-p',
      join(dir, 'policy.yaml'),
      join(dir, 'overlay'),
    ]);
    expect(out.stderr).toContain('moved terminationGracePeriodSeconds 45');
    const patched = await readFile(join(dir, 'overlay', 'patch.yaml'), 'utf8');
    expect(patched).toContain('      terminationGracePeriodSeconds: 45\n');
    expect(patched).not.toContain('preStop');
    expect(patched).not.toContain('readinessProbe');
  });
});
