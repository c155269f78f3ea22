// The shipped alerts (config/prometheus/rules.yaml) under promtool: the rules are valid,
// each alert has unit tests (config/prometheus/tests/alerts.test.yaml) that pass, each has a
// runbook section, and the tests fail when a rule is broken. In the e2e project because its
// global setup builds the cluster's Prometheus (test/cluster/build.ts), promtool with it.
import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { parse, stringify } from 'yaml';
import { buildPrometheus } from '../cluster/build.ts';
import { repoRoot } from '../operator/harness.ts';

const run = promisify(execFile);
const rulesPath = join(repoRoot, 'config', 'prometheus', 'rules.yaml');
const testsPath = join(repoRoot, 'config', 'prometheus', 'tests', 'alerts.test.yaml');
const dirs: string[] = [];

interface Rule {
  alert: string;
  expr: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

async function groups(): Promise<{ name: string; rules: Rule[] }[]> {
  const rule = parse(await readFile(rulesPath, 'utf8')) as {
    spec: { groups: { name: string; rules: Rule[] }[] };
  };
  return rule.spec.groups;
}

/** promtool on the PrometheusRule's groups as a plain rule file, beside the test file. */
async function promtool(
  command: 'check' | 'test',
  rules: { name: string; rules: Rule[] }[],
): Promise<{ code: number; output: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'gso-promtool-'));
  dirs.push(dir);
  await writeFile(join(dir, 'rules.yaml'), stringify({ groups: rules }));
  await copyFile(testsPath, join(dir, 'alerts.test.yaml'));
  const args = command === 'check' ? ['check', 'rules', 'rules.yaml'] : ['test', 'rules', 'alerts.test.yaml'];
  const binary = (await buildPrometheus({ progress: () => {} })).promtool;
  try {
    const { stdout, stderr } = await run(binary, args, { cwd: dir });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: Number(e.code ?? 1), output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe('alerts', () => {
  test('promtool check rules accepts them', async () => {
    const all = await groups();
    const result = await promtool('check', all);
    expect(result.code, result.output).toBe(0);
    expect(result.output).toContain(`SUCCESS: ${all.flatMap((g) => g.rules).length} rules found`);
  });

  test('promtool test rules passes, with a case for every alert', async () => {
    const result = await promtool('test', await groups());
    expect(result.code, result.output).toBe(0);
    expect(result.output).toContain('SUCCESS');
    const tests = parse(await readFile(testsPath, 'utf8')) as {
      tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[];
    };
    const cases = tests.tests.flatMap((t) => t.alert_rule_test);
    for (const rule of (await groups()).flatMap((g) => g.rules)) {
      const mine = cases.filter((c) => c.alertname === rule.alert);
      // Each alert is shown firing and shown not firing.
      expect(
        mine.some((c) => c.exp_alerts.length > 0),
        `${rule.alert} fires in a test`,
      ).toBe(true);
      expect(
        mine.some((c) => c.exp_alerts.length === 0),
        `${rule.alert} stays quiet in a test`,
      ).toBe(true);
    }
  });

  test('kubernetes-mixin conventions: CamelCase, severity, summary, description, a runbook section that exists', async () => {
    const runbooks = await readFile(join(repoRoot, 'docs', 'runbooks.md'), 'utf8');
    for (const rule of (await groups()).flatMap((g) => g.rules)) {
      expect(rule.alert).toMatch(/^GracefulShutdown[A-Z][A-Za-z]+$/);
      expect(['warning', 'critical']).toContain(rule.labels.severity);
      expect(rule.annotations.summary).toBeTruthy();
      expect(rule.annotations.description).toBeTruthy();
      const anchor = rule.annotations.runbook_url?.split('#')[1];
      expect(anchor).toBe(rule.alert.toLowerCase());
      expect(runbooks).toContain(`## ${rule.alert}\n`);
    }
  });

  test('negative control: the tests fail when a rule is broken', async () => {
    const broken = await groups();
    const rule = broken[0]?.rules.find((r) => r.alert === 'GracefulShutdownPolicyNonCompliant') as Rule;
    rule.expr = rule.expr.replace('> 0', '> 5');
    const result = await promtool('test', broken);
    expect(result.code).not.toBe(0);
    expect(result.output).toContain('GracefulShutdownPolicyNonCompliant');
  });
});
