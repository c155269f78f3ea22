// `gsp audit` output: a table for people, JSON for scripts, SARIF 2.1.0 for code-scanning UIs
// (GitHub code scanning, GitLab, Azure DevOps). SARIF is plain JSON; its types come from
// @types/sarif.
import type { Log, ReportingDescriptor, Result } from 'sarif';
import { type AuditResult, type Finding, RULES, type RuleId } from './audit.ts';

export type OutputFormat = 'table' | 'json' | 'sarif';

const HELP =
  'https://github.com/graceful-shutdown-operator/graceful-shutdown-operator/blob/main/docs/audit.md';

function columns(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function formatTable(result: AuditResult): string {
  const workloads = [
    ['WORKLOAD', 'POLICY', 'VERDICT', 'REASON', 'WHERE'],
    ...result.workloads.map((w) => [
      `${w.namespace}/${w.name}`,
      w.policy ?? '-',
      w.verdict ?? '-',
      w.reason ?? '-',
      `${w.source}:${w.line}`,
    ]),
  ];
  const findings = result.findings.map(
    (f) =>
      `${f.severity.toUpperCase()} ${f.rule}${f.workload ? ` ${f.workload.namespace}/${f.workload.name}` : ''} (${f.source}:${f.line})\n  ${f.message}\n  fix: ${f.fix}`,
  );
  const counts = (['error', 'warning', 'note'] as const)
    .map((s) => {
      const n = result.findings.filter((f) => f.severity === s).length;
      return `${n} ${s}${n === 1 ? '' : 's'}`;
    })
    .join(', ');
  return `${columns(workloads)}\n\n${findings.length > 0 ? `${findings.join('\n\n')}\n\n` : ''}${result.workloads.length} Deployments, ${result.policies.length} policies: ${counts}\n`;
}

export function formatJson(result: AuditResult): string {
  return `${JSON.stringify(result, null, 2)}\n`;
}

function sarifResult(f: Finding): Result {
  return {
    ruleId: f.rule,
    level: f.severity,
    message: {
      text: `${f.workload ? `${f.workload.namespace}/${f.workload.name}: ` : ''}${f.message}. Fix: ${f.fix}.`,
    },
    locations: [
      {
        physicalLocation: {
          artifactLocation: { uri: f.source === '-' ? 'stdin' : f.source },
          // SARIF lines start at 1: a problem with a whole file is on its first.
          region: { startLine: Math.max(1, f.line) },
        },
        ...(f.workload
          ? {
              logicalLocations: [
                {
                  kind: 'resource',
                  fullyQualifiedName: `Deployment/${f.workload.namespace}/${f.workload.name}`,
                },
              ],
            }
          : {}),
      },
    ],
    ...(f.policy ? { properties: { policy: f.policy } } : {}),
  };
}

export function formatSarif(result: AuditResult, version: string): string {
  const rules: ReportingDescriptor[] = (Object.keys(RULES) as RuleId[]).map((id) => ({
    id,
    shortDescription: { text: RULES[id].description },
    helpUri: `${HELP}#${id.toLowerCase()}`,
    defaultConfiguration: { level: RULES[id].severity },
  }));
  const log: Log = {
    $schema: 'https://json.schemastore.org/sarif-2.1.0.json',
    version: '2.1.0',
    runs: [
      {
        tool: { driver: { name: 'gsp', informationUri: HELP, version, rules } },
        results: result.findings.map(sarifResult),
      },
    ],
  };
  return `${JSON.stringify(log, null, 2)}\n`;
}
