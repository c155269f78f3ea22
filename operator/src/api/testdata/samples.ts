// The policies in config/samples, in the order its kustomization lists them; the unit test parses
// them with zod, the e2e test applies them to the apiserver.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

export const samplesDir = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '..',
  '..',
  'config',
  'samples',
);

export interface Sample {
  file: string;
  text: string;
  manifest: Record<string, unknown> & { metadata: { name: string } };
}

export function loadSamples(): Sample[] {
  const kustomization = parse(readFileSync(join(samplesDir, 'kustomization.yaml'), 'utf8')) as {
    resources: string[];
  };
  return kustomization.resources.map((file) => {
    const text = readFileSync(join(samplesDir, file), 'utf8');
    return { file, text, manifest: parse(text) };
  });
}
