// gsp audit on about 7,000 files of public manifests nobody here wrote (test/audit/corpus.ts):
// it reads every pod template in them, reports every file it cannot read that holds one, and
// finishes; --fix on Argo CD's 37,000-line install.yaml changes only the lines it reports.
import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, test } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { type AuditResult, type Finding, RULES } from '../../operator/src/cli/audit.ts';
import { gspRun } from '../../operator/src/cli/test-support.ts';
import { classify, workloadKind } from '../../operator/src/cli/workloads.ts';
import { isRecord } from '../../operator/src/util/is-record.ts';
import { ensureCorpus, filesUnder } from './corpus.ts';

const exec = promisify(execFile);

let corpus: string;
let files: string[];
let result: AuditResult;
let exitCode: number;
let stderr = '';

const gsp = gspRun;

beforeAll(async () => {
  corpus = await ensureCorpus(() => {});
  files = (await filesUnder(corpus)).filter((f) => /\.(ya?ml|json)$/.test(f)).map((f) => join(corpus, f));
  const out = await gsp(['audit', '-o', 'json', corpus]);
  exitCode = out.code;
  stderr = out.stderr;
  result = JSON.parse(out.stdout) as AuditResult;
}, 600_000);

/**
 * The reference reading: every document of every file by the yaml library, whole, duplicate
 * keys allowed as kubectl allows them; what gsp's faster reading must agree with.
 */
async function reference(): Promise<{ templates: number; brokenWithTemplates: Set<string> }> {
  let templates = 0;
  const brokenWithTemplates = new Set<string>();
  for (const file of files) {
    const text = await readFile(file, 'utf8');
    for (const doc of parseAllDocuments(text, { logLevel: 'silent', uniqueKeys: false })) {
      if (doc.errors.length > 0) {
        // A broken document that would hold a pod template, or a template (Helm), must be reported.
        const source = text.slice(doc.range[0], doc.range[2]);
        if (
          /^kind:\s*["']?(Deployment|StatefulSet|DaemonSet|ReplicaSet|Job|CronJob|Pod|Rollout)\b/m.test(
            source,
          ) ||
          /^[ \t]*(?:- )?\{\{|:[ \t]+\{\{/m.test(source)
        )
          brokenWithTemplates.add(file);
        continue;
      }
      const value = doc.toJS() as unknown;
      const objects =
        isRecord(value) &&
        typeof value.kind === 'string' &&
        value.kind.endsWith('List') &&
        Array.isArray(value.items)
          ? value.items
          : [value];
      for (const object of objects)
        if (isRecord(object) && classify(object, false).kind !== 'Other') templates++;
    }
  }
  return { templates, brokenWithTemplates };
}

describe('gsp audit on a large public manifest tree', () => {
  test('finishes with findings, prints nothing on stderr, and counts what it read and skipped', () => {
    expect(files.length).toBeGreaterThan(5000);
    expect(exitCode).toBe(1);
    expect(stderr).toBe('');
    const kinds = new Set(result.inventory.map((r) => r.kind));
    for (const kind of [
      'Deployment',
      'StatefulSet',
      'DaemonSet',
      'Job',
      'CronJob',
      'Rollout',
      'CustomResourceDefinition',
      'Service',
    ])
      expect(kinds).toContain(kind);
    expect(result.inventory.find((r) => r.kind === 'CustomResourceDefinition')?.skipped).toBeGreaterThan(100);
    expect(Object.keys(RULES)).toEqual(
      expect.arrayContaining([...new Set(result.findings.map((f) => f.rule))]),
    );
  });

  test('reads every pod template the reference reading finds, and reports every broken file that holds one', async () => {
    const { templates, brokenWithTemplates } = await reference();
    // gsp's count of objects of the workload kinds: read whole, read as parts, or skipped
    // (malformed, or an Argo Rollout with workloadRef).
    const counted = result.inventory
      .filter((r) => workloadKind({ kind: r.kind, apiVersion: r.apiVersion }) !== undefined)
      .reduce((n, r) => n + r.read + r.partial + r.skipped, 0);
    const malformed = result.findings.filter((f) => f.rule === 'InputMalformedWorkload').length;
    expect(templates).toBeGreaterThan(800);
    expect(counted).toBe(templates);
    expect(malformed).toBeLessThan(10);
    const reported = new Set(
      result.findings.filter((f) => f.rule === 'InputInvalidYaml').map((f) => f.source),
    );
    expect(brokenWithTemplates.size).toBeGreaterThan(50);
    expect([...brokenWithTemplates].filter((f) => !reported.has(f))).toEqual([]);
    // The reference reading parses about 7,000 files: seconds alone, over 20 on 2 busy cores
    // (a full npm test beside other work timed out at the default).
  }, 120_000);

  test("--fix on Argo CD's install.yaml changes only the lines it reports", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gsp-corpus-fix-'));
    try {
      const original = join(
        corpus,
        'github.com_argoproj_argo-cd_v3@v3.6.2/github.com/argoproj/argo-cd/v3@v3.6.2/manifests/install.yaml',
      );
      const file = join(dir, 'install.yaml');
      await copyFile(original, file);
      // The blog post's mistake, made in the repo server's container: a grace period under it.
      const text = await readFile(file, 'utf8');
      const repoServer = text.indexOf('        - /usr/local/bin/argocd-repo-server');
      const image = text.indexOf('        image: quay.io/argoproj/argocd:', repoServer);
      const lineEnd = text.indexOf('\n', image) + 1;
      const injected = '        terminationGracePeriodSeconds: 45';
      const before = `${text.slice(0, lineEnd)}${injected}\n${text.slice(lineEnd)}`;
      await writeFile(file, before);
      // And a policy for argocd-server, whose plan adds what it lacks.
      const policy = `apiVersion: gracefulshutdown.dev/v1alpha1
kind: GracefulShutdownPolicy
metadata: { name: argocd }
spec:
  mode: Audit
  deploymentSelector: { matchLabels: { app.kubernetes.io/name: argocd-server } }
  observedLatency: { source: None }
`;
      const out = await gsp(['audit', '--fix', '--fail-on', 'none', '-p', '-', file], policy);
      const fixed = out.stderr.split('\n').filter((l) => l.startsWith('fixed '));
      expect(fixed[0]).toBe(
        `fixed Deployment default/argocd-repo-server (${file}): moved terminationGracePeriodSeconds 45 from containers[argocd-repo-server] to the pod spec`,
      );
      expect(fixed.slice(1).every((l) => l.startsWith('fixed Deployment default/argocd-server'))).toBe(true);
      const after = await readFile(file, 'utf8');
      // diff: every line removed is the injected one; every line added belongs to a fix.
      await writeFile(join(dir, 'before.yaml'), before);
      const diff = await exec('diff', [join(dir, 'before.yaml'), file]).then(
        () => '',
        (e: { stdout: string }) => e.stdout,
      );
      const removed = diff.split('\n').filter((l) => l.startsWith('< '));
      const added = diff.split('\n').filter((l) => l.startsWith('> '));
      expect(removed).toEqual([`< ${injected}`]);
      expect(added[0]).toBe('>       terminationGracePeriodSeconds: 45');
      expect(added.length).toBeLessThan(20);
      expect(after.split('\n').length - before.split('\n').length).toBe(added.length - removed.length);
      // The file is the same objects but for the fixes, and audits clean of the misplaced field.
      const again = await gsp(['audit', '-o', 'json', file]);
      const rules = (JSON.parse(again.stdout) as { findings: Finding[] }).findings.map((f) => f.rule);
      expect(rules).not.toContain('MisplacedTerminationGracePeriod');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
