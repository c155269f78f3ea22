// Reading Kubernetes manifests for `gsp audit`: multi-document YAML (what kustomize build and
// helm template print), Lists, JSON, each object with the file and line it starts on.
import { LineCounter, parseAllDocuments } from 'yaml';
import { isRecord } from '../util/is-record.ts';

export interface Manifest {
  /** A path, or "-" for standard input. */
  source: string;
  /** 1-based line of the object's first key (of the List item, for a List). */
  line: number;
  object: Record<string, unknown>;
  /** From a file a kustomization names as a patch: part of an object, not a whole one. */
  patch?: boolean;
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

/** Why part of an input could not be read: reported as a finding, and the run goes on. */
export interface InputProblem {
  source: string;
  line: number;
  kind: 'InvalidYaml' | 'NotAnObject' | 'DuplicateKey';
  message: string;
}

/** The parse options: no warnings printed by the library (they become problems or nothing). */
const PARSE = { prettyErrors: false, logLevel: 'silent' } as const;

/** Every object in the text, with what could not be read. */
export function readInput(text: string, source: string): { manifests: Manifest[]; problems: InputProblem[] } {
  const manifests: Manifest[] = [];
  const problems: InputProblem[] = [];
  const lineCounter = new LineCounter();
  const documents = parseAllDocuments(text, { ...PARSE, lineCounter });
  // A key given twice is an error for the library and not for kubectl, where the last one wins:
  // such documents are read again with duplicates allowed, and reported as a warning.
  const lenient = new LineCounter();
  let relaxed: ReturnType<typeof parseAllDocuments> | undefined;
  const list = Array.isArray(documents) ? documents : [documents];
  list.forEach((parsed, index) => {
    let document = parsed;
    let counter = lineCounter;
    const duplicates = document.errors.filter((e) => e.code === 'DUPLICATE_KEY');
    if (duplicates.length > 0 && duplicates.length === document.errors.length) {
      relaxed ??= parseAllDocuments(text, { ...PARSE, lineCounter: lenient, uniqueKeys: false });
      const again = (Array.isArray(relaxed) ? relaxed : [relaxed])[index];
      if (again && again.errors.length === 0) {
        for (const d of duplicates)
          problems.push({
            source,
            line: lineCounter.linePos(d.pos[0]).line,
            kind: 'DuplicateKey',
            message: 'a key given twice: the last value is read, as kubectl does',
          });
        document = again as typeof parsed;
        counter = lenient;
      }
    }
    const [error] = document.errors;
    if (error) {
      problems.push({
        source,
        line: counter.linePos(error.pos[0]).line,
        kind: 'InvalidYaml',
        message: `not valid YAML (${error.code})`,
      });
      return;
    }
    const start = document.contents?.range?.[0] ?? 0;
    const value = document.toJS() as unknown;
    if (value === null || value === undefined) return; // an empty document (a trailing ---)
    const line = counter.linePos(start).line;
    if (!isRecord(value)) {
      problems.push({ source, line, kind: 'NotAnObject', message: 'not a Kubernetes object (a mapping)' });
      return;
    }
    if (typeof value.kind === 'string' && value.kind.endsWith('List') && Array.isArray(value.items)) {
      // List items: their lines from the YAML nodes, when the List is YAML (kubectl get -o yaml).
      const items = document.getIn(['items']) as
        | { items?: { range?: [number, number, number] }[] }
        | undefined;
      value.items.forEach((item, i) => {
        const at = items?.items?.[i]?.range?.[0];
        if (isRecord(item))
          manifests.push({
            source,
            line: at === undefined ? line : counter.linePos(at).line,
            object: item,
          });
      });
      return;
    }
    manifests.push({ source, line, object: value });
  });
  return { manifests, problems };
}

/** Every object in the text; the first problem is a ManifestError naming the file and line. */
export function readManifests(text: string, source: string): Manifest[] {
  const { manifests, problems } = readInput(text, source);
  const [problem] = problems.filter((p) => p.kind !== 'DuplicateKey');
  if (problem) throw new ManifestError(source, problem.line, problem.message);
  return manifests;
}
