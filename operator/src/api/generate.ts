// Writes crds/ from the schema. With --check, writes nothing and fails when crds/ is stale.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generatedCrdFiles } from './crd.ts';

export const crdsDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'crds');

function readOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Names of the files under crds/ whose content differs from what the schema generates. */
export function staleCrdFiles(): string[] {
  return [...generatedCrdFiles()]
    .filter(([name, content]) => readOrEmpty(join(crdsDir, name)) !== content)
    .map(([name]) => name);
}

function main(args: string[]): number {
  if (args.includes('--check')) {
    const stale = staleCrdFiles();
    if (stale.length === 0) return 0;
    console.error(`crds/ is out of date (${stale.join(', ')}): run npm run generate`);
    return 1;
  }
  for (const [name, content] of generatedCrdFiles()) {
    writeFileSync(join(crdsDir, name), content);
    console.log(`wrote crds/${name}`);
  }
  return 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.exitCode = main(process.argv.slice(2));
