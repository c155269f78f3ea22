// Reading Kubernetes manifests for `gsp audit`: multi-document YAML (what kustomize build and
// helm template print), Lists, JSON, each object with the file and line it starts on.
import { LineCounter, parseAllDocuments } from 'yaml';

export interface Manifest {
  /** A path, or "-" for standard input. */
  source: string;
  /** 1-based line of the object's first key (of the List item, for a List). */
  line: number;
  object: Record<string, unknown>;
}

export class ManifestError extends Error {
  readonly source: string;
  readonly line: number;
  constructor(source: string, line: number, message: string) {
    super(`${source}:${line}: ${message}`);
    this.name = 'ManifestError';
    this.source = source;
    this.line = line;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Every object in the text; a YAML error is a ManifestError naming the file and line. */
export function readManifests(text: string, source: string): Manifest[] {
  const lineCounter = new LineCounter();
  const documents = parseAllDocuments(text, { lineCounter, prettyErrors: false });
  const manifests: Manifest[] = [];
  for (const document of Array.isArray(documents) ? documents : [documents]) {
    const [error] = document.errors;
    if (error) {
      const line = lineCounter.linePos(error.pos[0]).line;
      throw new ManifestError(source, line, error.message.split('\n')[0] ?? 'invalid YAML');
    }
    const start = document.contents?.range?.[0] ?? 0;
    const value = document.toJS() as unknown;
    if (value === null || value === undefined) continue; // an empty document (a trailing ---)
    const line = lineCounter.linePos(start).line;
    if (!isObject(value)) throw new ManifestError(source, line, 'not a Kubernetes object (a mapping)');
    if (typeof value.kind === 'string' && value.kind.endsWith('List') && Array.isArray(value.items)) {
      // List items: their lines from the YAML nodes, when the List is YAML (kubectl get -o yaml).
      const items = document.getIn(['items']) as
        | { items?: { range?: [number, number, number] }[] }
        | undefined;
      value.items.forEach((item, i) => {
        const at = items?.items?.[i]?.range?.[0];
        if (isObject(item))
          manifests.push({
            source,
            line: at === undefined ? line : lineCounter.linePos(at).line,
            object: item,
          });
      });
      continue;
    }
    manifests.push({ source, line, object: value });
  }
  return manifests;
}
