// The benchmarks' tables (Markdown, for pasting into notes) and their one statistic.

/** A Markdown table; cells right-aligned (figures) unless `align` says left. */
export function markdownTable(header: string[], rows: string[][], align: 'left' | 'right' = 'right'): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const pad = (c: string, w: number) => (align === 'right' ? c.padStart(w) : c.padEnd(w));
  const line = (cells: string[]) => `| ${cells.map((c, i) => pad(c, widths[i] ?? 0)).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

/** The median of the figures (the upper one of an even count); NaN for none. */
export const median = (xs: readonly number[]) =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
