// Minimal text edits to YAML (and JSON) documents: set or remove a value at a path by splicing
// only its bytes, so that every other line of the file stays byte for byte as it was. The yaml
// library gives each node's offsets (its parse keeps them); re-rendering a document with it
// would re-indent lists, re-flow strings and re-space flow maps across the whole file
// (docs/design/audit-fix.md). The caller checks the result by parsing it again.
import {
  type Document,
  isCollection,
  isMap,
  isPair,
  isScalar,
  isSeq,
  type Node,
  type Pair,
  stringify,
  type YAMLMap,
} from 'yaml';
import type { FieldPath as Path } from './manifests.ts';

/** One splice of the text: [start, end) replaced by text. */
interface Splice {
  start: number;
  end: number;
  text: string;
  /** Order among splices at the same offset (the first given comes first). */
  order: number;
}

export class EditError extends Error {}

type Range = [number, number, number];

const rangeOf = (node: unknown): Range => {
  const range = (node as { range?: Range | null }).range;
  if (!range) throw new EditError('a node without a position');
  return range;
};

/** How the file writes things: line ending and indentation unit. */
interface Style {
  eol: string;
  indent: number;
  /** The document is JSON: new entries are JSON, even in an empty `{}`. */
  json: boolean;
}

function styleOf(text: string): Style {
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  // The smallest indentation step between consecutive lines that start a key.
  const indents = [...text.matchAll(/^( *)[^\s#-]/gm)].map((m) => m[1]?.length ?? 0);
  let indent = 0;
  for (let i = 1; i < indents.length; i++) {
    const step = (indents[i] ?? 0) - (indents[i - 1] ?? 0);
    if (step > 0 && (indent === 0 || step < indent)) indent = step;
  }
  return { eol, indent: indent || 2, json: false };
}

function lineStart(text: string, offset: number): number {
  return text.lastIndexOf('\n', offset - 1) + 1;
}

/** The offset after the line that ends at or after `offset` (its newline included). */
function lineEndAfter(text: string, offset: number): number {
  if (offset > 0 && text[offset - 1] === '\n') return offset;
  const newline = text.indexOf('\n', offset);
  return newline < 0 ? text.length : newline + 1;
}

/** The pair of `map` whose key is `key`. */
function pairOf(map: YAMLMap, key: string | number): Pair | undefined {
  return map.items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === key) as Pair | undefined;
}

/** Where a pair ends: after its value (and the value's comment and newline, in block style). */
function pairEnd(pair: Pair): number {
  const value = pair.value as Node | null;
  const [, valueEnd, nodeEnd] = rangeOf(value ?? pair.key);
  return Math.max(valueEnd, nodeEnd);
}

/** A block map's keys start on their own lines at one column; the column of the first. */
function columnOf(text: string, map: YAMLMap): number {
  const first = map.items[0];
  if (!first) throw new EditError('an empty block mapping');
  const start = rangeOf(first.key)[0];
  return start - lineStart(text, start);
}

const jsonKeys = (text: string, map: YAMLMap) =>
  map.items.some((p) => isScalar(p.key) && text[rangeOf(p.key)[0]] === '"');

/** The value in flow style: JSON where the map's keys are quoted as in JSON, YAML flow otherwise. */
function flowText(value: unknown, json: boolean): string {
  if (json) return JSON.stringify(value);
  return stringify(value, { collectionStyle: 'flow', lineWidth: 0 }).trimEnd();
}

/** `key: value` as block YAML lines at `column`, each ending with the file's line ending. */
function blockLines(key: string, value: unknown, column: number, style: Style): string {
  const rendered = stringify({ [key]: value }, { indent: style.indent, lineWidth: 0 });
  const pad = ' '.repeat(column);
  return rendered
    .trimEnd()
    .split('\n')
    .map((line) => `${pad}${line}${style.eol}`)
    .join('');
}

function insertInto(
  text: string,
  map: YAMLMap,
  key: string,
  value: unknown,
  style: Style,
): Omit<Splice, 'order'> {
  if (map.flow) {
    const json = style.json || jsonKeys(text, map);
    const last = map.items[map.items.length - 1];
    const entry = `${json ? JSON.stringify(key) : key}: ${flowText(value, json)}`;
    if (!last) {
      const open = rangeOf(map)[0];
      return { start: open + 1, end: open + 1, text: json ? entry : ` ${entry} ` };
    }
    const lastEnd = rangeOf(last.value ?? last.key)[1];
    const lastKey = rangeOf(last.key)[0];
    // Keys one per line (pretty JSON): a new line at the same column, nested values indented.
    const ownLine = text.slice(lineStart(text, lastKey), lastKey).trim() === '';
    if (!ownLine) return { start: lastEnd, end: lastEnd, text: `, ${entry}` };
    const pad = ' '.repeat(lastKey - lineStart(text, lastKey));
    const pretty = json
      ? `${JSON.stringify(key)}: ${JSON.stringify(value, null, style.indent).split('\n').join(`${style.eol}${pad}`)}`
      : entry;
    return { start: lastEnd, end: lastEnd, text: `,${style.eol}${pad}${pretty}` };
  }
  const column = columnOf(text, map);
  const last = map.items[map.items.length - 1] as Pair;
  // After the last pair's line (and its comment): comment lines after it stay below.
  const at = lineEndAfter(text, rangeOf(last.value ?? last.key)[1]);
  const prefix = at === text.length && !text.endsWith('\n') ? style.eol : '';
  return { start: at, end: at, text: prefix + blockLines(key, value, column, style) };
}

function removeFrom(text: string, map: YAMLMap, pair: Pair): Omit<Splice, 'order'> {
  const keyStart = rangeOf(pair.key)[0];
  const index = map.items.indexOf(pair);
  if (map.flow) {
    const next = map.items[index + 1];
    const previous = map.items[index - 1];
    // `a: 1, b: 2`: remove `a: 1, ` (up to the next key), or `, b: 2` (from the previous value).
    if (next) return { start: keyStart, end: rangeOf(next.key)[0], text: '' };
    if (previous)
      return {
        start: rangeOf(previous.value ?? previous.key)[1],
        end: rangeOf(pair.value ?? pair.key)[1],
        text: '',
      };
    return { start: keyStart, end: rangeOf(pair.value ?? pair.key)[1], text: '' };
  }
  const start = lineStart(text, keyStart);
  const end = lineEndAfter(text, pairEnd(pair));
  if (text.slice(start, keyStart).trim() === '') return { start, end, text: '' };
  // The first key of a sequence item (`- name: x`): the next key moves up onto the `- ` line
  // when only blanks lie between; else (a comment) the `-` stays alone on its line, and the
  // item's keys below it, so that nothing but the pair goes.
  const next = map.items[index + 1];
  if (!next) throw new EditError('the only key of a sequence item');
  const nextKey = rangeOf(next.key)[0];
  if (text.slice(end, nextKey).trim() === '') return { start: keyStart, end: nextKey, text: '' };
  const dash = text.lastIndexOf('-', keyStart);
  const lineEnd = text[end - 1] === '\n' ? end - (text[end - 2] === '\r' ? 2 : 1) : end;
  return { start: dash + 1, end: lineEnd, text: '' };
}

/**
 * The text with the value at each path set (or, for undefined, removed). Paths go through
 * mappings and sequences of `doc`, which must be the parse of `text` (with its ranges); a missing
 * mapping on the way is created with the value inside. Only the spliced spans change.
 */
export function editYaml(text: string, doc: Document, edits: { path: Path; value: unknown }[]): string {
  const root = doc.contents;
  const style = { ...styleOf(text), json: isMap(root) && root.flow === true && jsonKeys(text, root) };
  const splices: Splice[] = [];
  edits.forEach(({ path, value }, order) => {
    // The deepest mapping on the path that exists, and the key under it.
    let node: unknown = doc.contents;
    let depth = 0;
    for (; depth < path.length - 1; depth++) {
      const key = path[depth] as string | number;
      const next = isMap(node)
        ? pairOf(node, key)?.value
        : isSeq(node)
          ? node.items[key as number]
          : undefined;
      if (!isCollection(next)) break;
      node = next;
    }
    if (!isMap(node)) throw new EditError(`${path.slice(0, depth).join('.')} is not a mapping`);
    const key = String(path[depth]);
    // What goes under that key: the value itself, or the mappings the path still needs.
    const inserted = path.slice(depth + 1).reduceRight<unknown>((inner, k) => ({ [k]: inner }), value);
    const pair = pairOf(node, key);
    if (pair && depth < path.length - 1)
      throw new EditError(`${path.slice(0, depth + 1).join('.')} is not a mapping`);
    if (
      pair &&
      value !== undefined &&
      isScalar(pair.value) &&
      (typeof value !== 'object' || value === null)
    ) {
      const [start, end] = rangeOf(pair.value);
      splices.push({
        start,
        end,
        text: flowText(value, text[start] === '"' && typeof value === 'string'),
        order,
      });
      return;
    }
    if (pair) splices.push({ ...removeFrom(text, node, pair), order });
    if (value !== undefined) splices.push({ ...insertInto(text, node, key, inserted, style), order });
  });
  // From the end, so that earlier offsets stay valid; at one offset, in the order given.
  splices.sort((a, b) => b.start - a.start || b.order - a.order);
  let result = text;
  let limit = Number.POSITIVE_INFINITY;
  for (const s of splices) {
    if (s.end > limit) throw new EditError('two edits overlap');
    result = result.slice(0, s.start) + s.text + result.slice(s.end);
    limit = s.start;
  }
  return result;
}
