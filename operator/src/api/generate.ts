// Writes what is generated from the schema: crds/ and the field reference in docs/policy.md.
// With --check, writes nothing and fails when any of it is stale.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generatedCrdFiles } from './crd.ts';
import { spliceReference } from './reference.ts';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

interface GeneratedFile {
  /** Relative to the repository root. */
  path: string;
  /** The expected content, given the current one (for files that are only partly generated). */
  render: (current: string) => string;
}

function generatedFiles(): GeneratedFile[] {
  const crds = [...generatedCrdFiles()].map(([name, content]) => ({
    path: `crds/${name}`,
    render: () => content,
  }));
  return [...crds, { path: 'docs/policy.md', render: spliceReference }];
}

function readOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Paths of the generated files whose content differs from what the schema generates. */
export function staleGeneratedFiles(): string[] {
  return generatedFiles()
    .filter(({ path, render }) => {
      const current = readOrEmpty(join(repoRoot, path));
      return current !== render(current);
    })
    .map(({ path }) => path);
}

function main(args: string[]): number {
  if (args.includes('--check')) {
    const stale = staleGeneratedFiles();
    if (stale.length === 0) return 0;
    console.error(`out of date: ${stale.join(', ')}; run npm run generate`);
    return 1;
  }
  for (const { path, render } of generatedFiles()) {
    const target = join(repoRoot, path);
    const current = readOrEmpty(target);
    const content = render(current);
    if (content !== current) writeFileSync(target, content);
    console.log(`${content === current ? 'unchanged' : 'wrote'} ${path}`);
  }
  return 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.exitCode = main(process.argv.slice(2));
