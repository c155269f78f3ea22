// `gsp audit` output: a table for people, JSON for scripts, SARIF 2.1.0 for code-scanning UIs
// (GitHub code scanning, GitLab, Azure DevOps). SARIF is plain JSON; its types come from
// @types/sarif.
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Log, ReportingDescriptor, Result } from 'sarif';
import { type AuditResult, type Finding, RULES, type RuleId } from './audit.ts';

export type OutputFormat = 'table' | 'json' | 'sarif';

const HELP =
  'https://github.com/graceful-shutdown-operator/graceful-shutdown-operator/blob/main/docs/audit.md';

/**
 * Text from the manifests as the table prints it: control characters (a newline that would start
 * a `::error::` line in a CI log, an escape sequence) written as \n, \u001b..., so every
 * finding is one line of its own.
 */
export function printable(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) =>
    c === '\n' ? '\\n' : c === '\t' ? '\\t' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

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

/** "3 Deployment apps/v1, 1 CronJob batch/v1": the inventory's rows with a count of `what`. */
function countsOf(result: AuditResult, what: 'read' | 'partial' | 'skipped'): string {
  return result.inventory
    .filter((r) => r[what] > 0)
    .sort((a, b) => b[what] - a[what] || a.kind.localeCompare(b.kind))
    .map((r) => `${r[what]} ${r.kind} ${r.apiVersion}`)
    .join(', ');
}

/** What was read and skipped, by kind and apiVersion. */
function inventoryLines(result: AuditResult): string[] {
  const lines: string[] = [];
  for (const [what, label] of [
    ['read', 'read'],
    ['partial', 'partial (patches: checked for misplaced fields only)'],
    ['skipped', 'skipped (no pod template)'],
  ] as const) {
    const counts = countsOf(result, what);
    if (counts) lines.push(printable(`${label}: ${counts}`));
  }
  if (result.policies.length > 0 && result.workloads.some((w) => w.kind !== 'Deployment'))
    lines.push('policy verdicts are for Deployments only: the operator acts on Deployments');
  return lines;
}

export function formatTable(result: AuditResult): string {
  const workloads = [
    ['KIND', 'WORKLOAD', 'POLICY', 'VERDICT', 'REASON', 'WHERE'],
    ...result.workloads.map((w) =>
      [
        w.kind,
        `${w.namespace}/${w.name}`,
        w.policy ?? '-',
        w.verdict ?? '-',
        w.reason ?? '-',
        `${w.source}:${w.line}`,
      ].map(printable),
    ),
  ];
  const findings = result.findings.map(
    (f) =>
      `${f.severity.toUpperCase()} ${f.rule}${f.workload ? ` ${printable(`${f.workload.kind} ${f.workload.namespace}/${f.workload.name}`)}` : ''} (${printable(`${f.source}:${f.line}${f.column ? `:${f.column}` : ''}`)})\n  ${printable(f.message)}\n  fix: ${printable(f.fix)}`,
  );
  const counts = (['error', 'warning', 'note'] as const)
    .map((s) => {
      const n = result.findings.filter((f) => f.severity === s).length;
      return `${n} ${s}${n === 1 ? '' : 's'}`;
    })
    .join(', ');
  const deployments = result.workloads.filter((w) => w.kind === 'Deployment').length;
  const summary = [
    ...inventoryLines(result),
    `${result.workloads.length} workloads (${deployments} Deployments), ${result.policies.length} policies: ${counts}`,
  ];
  return `${columns(workloads)}\n\n${findings.length > 0 ? `${findings.join('\n\n')}\n\n` : ''}${summary.join('\n')}\n`;
}

export function formatJson(result: AuditResult): string {
  return `${JSON.stringify(result, null, 2)}\n`;
}

/** Where SARIF locations are relative to: `%SRCROOT%`, given as a file URI. */
export const SARIF_BASE_ID = 'SRCROOT';

/**
 * A source as a SARIF artifact location: relative to `base` (percent-encoded, `/`-separated,
 * with uriBaseId) when it lies under it, an absolute file URI otherwise, and standard input by
 * the name given.
 */
export function artifactLocation(
  source: string,
  base: string,
  stdinName: string,
): { uri: string; uriBaseId?: string } {
  const path = source === '-' ? stdinName : source;
  const full = resolve(base, path);
  const rel = relative(base, full);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) return { uri: pathToFileURL(full).href };
  return { uri: rel.split(sep).map(encodeURIComponent).join('/'), uriBaseId: SARIF_BASE_ID };
}

function sarifResult(f: Finding, base: string, stdinName: string): Result {
  return {
    ruleId: f.rule,
    level: f.severity,
    message: {
      text: `${f.workload ? `${f.workload.namespace}/${f.workload.name}: ` : ''}${f.message}. Fix: ${f.fix}.`,
    },
    locations: [
      {
        physicalLocation: {
          artifactLocation: artifactLocation(f.source, base, stdinName),
          // SARIF lines start at 1: a problem with a whole file is on its first.
          region: { startLine: Math.max(1, f.line), ...(f.column ? { startColumn: f.column } : {}) },
        },
        ...(f.workload
          ? {
              logicalLocations: [
                {
                  kind: 'resource',
                  fullyQualifiedName: `${f.workload.kind}/${f.workload.namespace}/${f.workload.name}`,
                },
              ],
            }
          : {}),
      },
    ],
    ...(f.policy ? { properties: { policy: f.policy } } : {}),
  };
}

export function formatSarif(
  result: AuditResult,
  version: string,
  { base = process.cwd(), stdinName = 'stdin' }: { base?: string; stdinName?: string } = {},
): string {
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
        // The base as a directory URI (a trailing slash), as SARIF wants it.
        originalUriBaseIds: {
          [SARIF_BASE_ID]: { uri: `${pathToFileURL(resolve(base)).href.replace(/\/?$/, '/')}` },
        },
        results: result.findings.map((f) => sarifResult(f, resolve(base), stdinName)),
      },
    ],
  };
  return `${JSON.stringify(log, null, 2)}\n`;
}
