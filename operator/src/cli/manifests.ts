// Reading Kubernetes manifests for `gsp audit`: multi-document YAML (what kustomize build and
// helm template print), Lists, JSON, each object with the file and line it starts on.
//
// Speed: a large tree is mostly objects gsp has no rule for (CustomResourceDefinitions, RBAC,
// dashboards). Those are known by their `kind:` and `apiVersion:` lines and not parsed further;
// only the documents of the kinds the caller wants read whole (and any document whose kind is not
// plain on a line of its own) go through the YAML parser, which keeps positions. JSON goes
// through JSON.parse first. docs/audit.md, "Speed".
import { loadAll } from 'js-yaml';
import { type Document, isMap, isScalar, isSeq, LineCounter, parseAllDocuments, parseDocument } from 'yaml';
import { isRecord } from '../util/is-record.ts';

export interface Manifest {
  /** A path, or "-" for standard input. */
  source: string;
  /** 1-based line of the object's first key (of the List item, for a List). */
  line: number;
  /** The object; of a kind not read whole, only its kind and apiVersion. */
  object: Record<string, unknown>;
  /** From a file a kustomization names as a patch: part of an object, not a whole one. */
  patch?: boolean;
  /** Where a field of the object is written (its key), for objects read whole. */
  locate?: Locate;
}

/** Keys and sequence indexes from an object to one of its fields. */
export type FieldPath = readonly (string | number)[];

/** 1-based line and column. */
export interface Position {
  line: number;
  column: number;
}

/**
 * Where the field at `path` (keys and sequence indexes from the object) is written: its key's
 * position, or the deepest part of the path that is there.
 */
export type Locate = (path: FieldPath) => Position;

/** A Locate over a parsed document: `prefix` leads to the object (a List's item). */
function locator(document: Document, counter: LineCounter, firstLine: number, prefix: FieldPath): Locate {
  return (path) => {
    let node: unknown = document.contents;
    let at = (node as { range?: [number] } | null)?.range?.[0] ?? 0;
    for (const key of [...prefix, ...path]) {
      if (isMap(node)) {
        // The last of duplicate keys: the one kubectl reads.
        const pair = node.items.findLast((p) => isScalar(p.key) && p.key.value === key);
        const range = (pair?.key as { range?: [number] } | undefined)?.range;
        if (!pair || !range) break;
        at = range[0];
        node = pair.value;
      } else if (isSeq(node) && typeof key === 'number' && node.items[key]) {
        const item = node.items[key] as { range?: [number] };
        if (!item.range) break;
        at = item.range[0];
        node = item;
      } else break;
    }
    const { line, col } = counter.linePos(at);
    return { line: firstLine - 1 + line, column: col };
  };
}

/** A Locate that parses the text with positions the first time it is asked. */
function lazyLocator(text: string, firstLine: number): Locate {
  let located: Locate | undefined;
  return (path) => {
    if (!located) {
      const counter = new LineCounter();
      located = locator(
        parseDocument(text, { ...PARSE, lineCounter: counter, uniqueKeys: false }),
        counter,
        firstLine,
        [],
      );
    }
    return located(path);
  };
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

/** Which kinds are read whole (parsed, with positions); every kind when not given. */
export type WholeKinds = (kind: string) => boolean;

const isList = (kind: string) => kind.endsWith('List');

/** The parse options: no warnings printed by the library (they become problems or nothing). */
const PARSE = { prettyErrors: false, logLevel: 'silent' } as const;

/** `kind: Deployment` (quoted or not, a comment after it) on a line of its own at column 0. */
// Lines are what YAML calls lines: ended by \n (\r\n). The patterns do not use the m flag,
// whose ^ and $ would also take U+2028 and U+2029 (which YAML reads as content) for line ends.
const KIND_LINE = /(?<![^\n])kind:[ \t]*(["']?)([A-Za-z][A-Za-z0-9]*)\1[ \t]*(?:#[^\n]*)?(?=\r?\n|$)/g;
const API_VERSION_LINE =
  /(?<![^\n])apiVersion:[ \t]*(["']?)([A-Za-z0-9][A-Za-z0-9.\-/]*)\1[ \t]*(?:#[^\n]*)?(?=\r?\n|$)/g;
/** Helm or Go template actions where YAML would not have them: a line of its own, a plain value. */
const TEMPLATE = /(?<![^\n])[ \t]*(?:- )?\{\{|:[ \t]+\{\{/;
/** The first line of content: not blank, not a comment, not a `---` or `...` marker. */
const FIRST_CONTENT = /(?<![^\n])(?![ \t]*(?:#|\r?\n|\r?$)|(?:---|\.\.\.)(?:[ \t]|\r?\n|\r?$))/;
/** A line that starts a document (`---` alone, or before content on its line). */
const DOCUMENT_START = /(?<![^\n])---(?=[ \t\r\n]|$)/g;
/** A line that ends one (`...`): what follows it, up to the next `---`, is another document. */
const DOCUMENT_END = /(?<![^\n])\.\.\.(?=[ \t]*(?:#[^\n]*)?(?:\r?\n|$))[^\n]*\n?/g;
/** An anchor (`&name`): aliases to it are read by the yaml library, which bounds their expansion. */
const ANCHOR = /(?:^|[\s[{,:-])&[^\s,[\]{}]+/;

/** The value of a top-level key, from its lines: undefined unless exactly one value is given. */
function scanned(text: string, pattern: RegExp): string | undefined {
  const values = new Set([...text.matchAll(pattern)].map((m) => m[2]));
  return values.size === 1 ? [...values][0] : undefined;
}

/** The text's documents, each with the 1-based line it starts on. */
function documents(text: string): { text: string; line: number }[] {
  // A directive (%YAML, %TAG) belongs with the document after it: such a stream is not split.
  if (/(?<![^\n])%/.test(text)) return [{ text, line: 1 }];
  const starts = [
    0,
    ...[...text.matchAll(DOCUMENT_START)].map((m) => m.index),
    ...[...text.matchAll(DOCUMENT_END)].map((m) => m.index + m[0].length),
  ]
    .filter((i, n, all) => (i > 0 || n === 0) && i < text.length && all.indexOf(i) === n)
    .sort((a, b) => a - b);
  let line = 1;
  return starts.map((start, i) => {
    const chunk = text.slice(start, starts[i + 1] ?? text.length);
    const at = line;
    for (let j = chunk.indexOf('\n'); j >= 0; j = chunk.indexOf('\n', j + 1)) line++;
    return { text: chunk, line: at };
  });
}

/** Parses YAML text with positions; the objects and problems, lines counted from `firstLine`. */
function parseYaml(
  text: string,
  source: string,
  firstLine: number,
  whole: WholeKinds,
  out: { manifests: Manifest[]; problems: InputProblem[] },
): void {
  const lineCounter = new LineCounter();
  const lineOf = (counter: LineCounter, offset: number) => firstLine - 1 + counter.linePos(offset).line;
  const parsed = parseAllDocuments(text, { ...PARSE, lineCounter });
  // A key given twice is an error for the library and not for kubectl, where the last one wins:
  // such documents are read again with duplicates allowed, and reported as a warning.
  const lenient = new LineCounter();
  let relaxed: ReturnType<typeof parseAllDocuments> | undefined;
  const list = Array.isArray(parsed) ? parsed : [parsed];
  list.forEach((first, index) => {
    let document = first;
    let counter = lineCounter;
    const duplicates = document.errors.filter((e) => e.code === 'DUPLICATE_KEY');
    if (duplicates.length > 0 && duplicates.length === document.errors.length) {
      relaxed ??= parseAllDocuments(text, { ...PARSE, lineCounter: lenient, uniqueKeys: false });
      const again = (Array.isArray(relaxed) ? relaxed : [relaxed])[index];
      if (again && again.errors.length === 0) {
        for (const d of duplicates)
          out.problems.push({
            source,
            line: lineOf(lineCounter, d.pos[0]),
            kind: 'DuplicateKey',
            message: 'a key given twice: the last value is read, as kubectl does',
          });
        document = again as typeof first;
        counter = lenient;
      }
    }
    const [error] = document.errors;
    if (error) {
      out.problems.push({
        source,
        line: lineOf(counter, error.pos[0]),
        kind: 'InvalidYaml',
        message: `not valid YAML (${error.code})`,
      });
      return;
    }
    let value: unknown;
    try {
      value = document.toJS();
    } catch (error) {
      // The yaml library bounds alias expansion (an alias bomb) and says so with an exception.
      out.problems.push({
        source,
        line: lineOf(counter, document.contents?.range?.[0] ?? 0),
        kind: 'InvalidYaml',
        message: `not read: ${(error as Error).message}`,
      });
      return;
    }
    if (value === null || value === undefined) return; // an empty document (a trailing ---)
    const line = lineOf(counter, document.contents?.range?.[0] ?? 0);
    if (!isRecord(value)) {
      out.problems.push({
        source,
        line,
        kind: 'NotAnObject',
        message: 'not a Kubernetes object (a mapping)',
      });
      return;
    }
    if (typeof value.kind === 'string' && isList(value.kind) && Array.isArray(value.items)) {
      // List items: their lines from the YAML nodes.
      const items = document.getIn(['items']) as
        | { items?: { range?: [number, number, number] }[] }
        | undefined;
      value.items.forEach((item, i) => {
        const at = items?.items?.[i]?.range?.[0];
        if (isRecord(item))
          out.manifests.push({
            source,
            line: at === undefined ? line : lineOf(counter, at),
            object: item,
            locate: locator(document, counter, firstLine, ['items', i]),
          });
      });
      return;
    }
    out.manifests.push({
      source,
      line,
      object: kindOnly(value, whole),
      locate: locator(document, counter, firstLine, []),
    });
  });
}

/** The object, or of a kind not read whole only what identifies it. */
function kindOnly(value: Record<string, unknown>, whole: WholeKinds): Record<string, unknown> {
  return typeof value.kind === 'string' && !whole(value.kind)
    ? { apiVersion: value.apiVersion, kind: value.kind }
    : value;
}

/**
 * Every object in the text, with what could not be read. Objects of kinds `whole` does not take
 * carry only their kind and apiVersion.
 */
export function readInput(
  text: string,
  source: string,
  whole: WholeKinds = () => true,
): { manifests: Manifest[]; problems: InputProblem[] } {
  const out = { manifests: [] as Manifest[], problems: [] as InputProblem[] };
  // JSON: one document, read by the platform's parser; with positions only where they are needed.
  if (/^\s*[{[]/.test(text)) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      value = undefined; // not JSON after all (YAML flow, a template): the YAML parser says why
    }
    // Not of a kind read whole (or no Kubernetes object at all: a dashboard, a schema).
    if (isRecord(value) && !(typeof value.kind === 'string' && (whole(value.kind) || isList(value.kind)))) {
      out.manifests.push({ source, line: 1, object: { apiVersion: value.apiVersion, kind: value.kind } });
      return out;
    }
    if (value !== undefined && !isRecord(value)) {
      out.problems.push({
        source,
        line: 1,
        kind: 'NotAnObject',
        message: 'not a Kubernetes object (a mapping)',
      });
      return out;
    }
  }
  for (const document of documents(text)) {
    const kind = scanned(document.text, KIND_LINE);
    const apiVersion = scanned(document.text, API_VERSION_LINE);
    // Known by its lines, and of a kind not read whole: counted, not parsed. A template is
    // parsed all the same, to say that it is one.
    if (
      kind !== undefined &&
      apiVersion !== undefined &&
      !whole(kind) &&
      !isList(kind) &&
      !TEMPLATE.test(document.text)
    ) {
      out.manifests.push({ source, line: lineOfContent(document), object: { apiVersion, kind } });
      continue;
    }
    // Neither line: not a Kubernetes object in block style (a data file, a lock file, a
    // schema). The faster parser checks it; anything it finds worth a position goes to the other.
    const anchored = ANCHOR.test(document.text);
    if (kind === undefined && apiVersion === undefined && !TEMPLATE.test(document.text) && !anchored) {
      const quick = quickObjects(document.text);
      if (quick?.every((v) => !(isRecord(v) && typeof v.kind === 'string'))) {
        const line = lineOfContent(document);
        for (const value of quick)
          if (isRecord(value)) out.manifests.push({ source, line, object: { apiVersion: value.apiVersion } });
          else if (value !== null && value !== undefined)
            out.problems.push({
              source,
              line,
              kind: 'NotAnObject',
              message: 'not a Kubernetes object (a mapping)',
            });
        continue;
      }
    }
    // One object that parses without a problem: js-yaml reads it, and positions are computed
    // only if a finding needs one. Anything else (a problem to report, several documents, a
    // List) goes through the yaml library, which says where.
    const quick =
      kind !== undefined && !isList(kind) && !anchored ? quickObjects(document.text, false) : undefined;
    if (quick?.length === 1 && isRecord(quick[0])) {
      out.manifests.push({
        source,
        line: lineOfContent(document),
        object: kindOnly(quick[0], whole),
        locate: lazyLocator(document.text, document.line),
      });
      continue;
    }
    parseYaml(document.text, source, document.line, whole, out);
  }
  return out;
}

/** The line of a document's first content (after the `---` marker and comments). */
function lineOfContent(document: { text: string; line: number }): number {
  const start = document.text.search(FIRST_CONTENT);
  return document.line + (start < 0 ? 0 : document.text.slice(0, start).split('\n').length - 1);
}

/**
 * The document's values by js-yaml, several times faster than the yaml library for a check
 * without positions: duplicate keys as kubectl reads them (the last wins). Only for documents
 * without anchors: js-yaml counts aliases but not how far they expand. Undefined when it does not parse (the yaml library says why).
 */
function quickObjects(text: string, lastKeyWins = true): unknown[] | undefined {
  try {
    return loadAll(text, { json: lastKeyWins, maxAliases: 100 });
  } catch {
    return undefined;
  }
}

/** Every object in the text; the first problem is a ManifestError naming the file and line. */
export function readManifests(text: string, source: string): Manifest[] {
  const { manifests, problems } = readInput(text, source);
  const [problem] = problems.filter((p) => p.kind !== 'DuplicateKey');
  if (problem) throw new ManifestError(source, problem.line, problem.message);
  return manifests;
}
