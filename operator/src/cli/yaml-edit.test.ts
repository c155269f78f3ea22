import { describe, expect, test } from 'vitest';
import { parse, parseAllDocuments, parseDocument } from 'yaml';
import type { FieldPath as Path } from './manifests.ts';
import { EditError, editYaml } from './yaml-edit.ts';

const edit = (text: string, edits: { path: Path; value: unknown }[]) =>
  editYaml(text, parseDocument(text), edits);

/** The lines of `after` that are not in `before`, and the other way round. */
function changedLines(before: string, after: string): { added: string[]; removed: string[] } {
  const a = before.split('\n');
  const b = after.split('\n');
  return { added: b.filter((l) => !a.includes(l)), removed: a.filter((l) => !b.includes(l)) };
}

const container = `spec:
  template:
    spec:
      containers:
        # the app
        - name: app   # its name
          image: registry.example/app:1
          terminationGracePeriodSeconds: 20 # wrong place
          ports: [ {containerPort: 80} ]
          args: ["--a", '--b']
      # trailing comment of the pod spec
`;

describe('editYaml', () => {
  test('removing a key takes its line only; adding one appends a line at the column of its siblings', () => {
    const out = edit(container, [
      {
        path: ['spec', 'template', 'spec', 'containers', 0, 'terminationGracePeriodSeconds'],
        value: undefined,
      },
      { path: ['spec', 'template', 'spec', 'terminationGracePeriodSeconds'], value: 20 },
    ]);
    expect(changedLines(container, out)).toEqual({
      added: ['      terminationGracePeriodSeconds: 20'],
      removed: ['          terminationGracePeriodSeconds: 20 # wrong place'],
    });
    // Comments, odd spacing of flow collections and quoting stay as written.
    expect(out).toContain('        - name: app   # its name\n');
    expect(out).toContain('          ports: [ {containerPort: 80} ]\n');
    expect(out).toContain('      # trailing comment of the pod spec\n');
    expect(parse(out).spec.template.spec).toEqual({
      containers: [
        {
          name: 'app',
          image: 'registry.example/app:1',
          ports: [{ containerPort: 80 }],
          args: ['--a', '--b'],
        },
      ],
      terminationGracePeriodSeconds: 20,
    });
  });

  test('a nested value is written as block YAML at the right depth; a missing mapping on the way is created', () => {
    const out = edit(container, [
      {
        path: ['spec', 'template', 'spec', 'containers', 0, 'lifecycle', 'preStop'],
        value: { sleep: { seconds: 5 } },
      },
      {
        path: ['spec', 'template', 'spec', 'containers', 0, 'readinessProbe'],
        value: { tcpSocket: { port: 80 } },
      },
    ]);
    expect(changedLines(container, out).added).toEqual([
      '          lifecycle:',
      '            preStop:',
      '              sleep:',
      '                seconds: 5',
      '          readinessProbe:',
      '            tcpSocket:',
      '              port: 80',
    ]);
    expect(changedLines(container, out).removed).toEqual([]);
  });

  test('a scalar is replaced in place, quoted as it was', () => {
    const text = 'spec:\n  terminationGracePeriodSeconds: 30  # keep this comment\n  name: "x"\n';
    expect(
      edit(text, [
        { path: ['spec', 'terminationGracePeriodSeconds'], value: 45 },
        { path: ['spec', 'name'], value: 'y' },
      ]),
    ).toBe('spec:\n  terminationGracePeriodSeconds: 45  # keep this comment\n  name: "y"\n');
  });

  test('the first key of a sequence item: the next key moves up onto the "- " line', () => {
    const text = 'containers:\n  - terminationGracePeriodSeconds: 5\n    name: app\n    image: x\n';
    expect(edit(text, [{ path: ['containers', 0, 'terminationGracePeriodSeconds'], value: undefined }])).toBe(
      'containers:\n  - name: app\n    image: x\n',
    );
  });

  test('flow mappings stay flow: YAML flow, compact JSON, pretty JSON', () => {
    expect(edit('a: { b: 1, c: 2 }\n', [{ path: ['a', 'b'], value: undefined }])).toBe('a: { c: 2 }\n');
    expect(edit('a: { b: 1, c: 2 }\n', [{ path: ['a', 'c'], value: undefined }])).toBe('a: { b: 1 }\n');
    expect(edit('a: { b: 1 }\n', [{ path: ['a', 'd'], value: { e: [1, 'x'] } }])).toBe(
      'a: { b: 1, d: { e: [ 1, x ] } }\n',
    );
    const compact = '{"a": {"b": 1}, "k": "v"}\n';
    const c = edit(compact, [{ path: ['a', 'd'], value: { e: 'f' } }]);
    expect(c).toBe('{"a": {"b": 1, "d": {"e":"f"}}, "k": "v"}\n');
    expect(JSON.parse(c)).toEqual({ a: { b: 1, d: { e: 'f' } }, k: 'v' });
    const pretty = '{\n  "a": {\n    "b": 1\n  }\n}\n';
    const p = edit(pretty, [{ path: ['a', 'd'], value: { e: 'f' } }]);
    expect(p).toBe('{\n  "a": {\n    "b": 1,\n    "d": {\n      "e": "f"\n    }\n  }\n}\n');
    expect(JSON.parse(p)).toEqual({ a: { b: 1, d: { e: 'f' } } });
  });

  test('CRLF files get CRLF lines; a file without a final newline gets one before the new line', () => {
    const crlf = 'spec:\r\n  a: 1\r\n';
    expect(edit(crlf, [{ path: ['spec', 'b'], value: 2 }])).toBe('spec:\r\n  a: 1\r\n  b: 2\r\n');
    expect(edit('spec:\n  a: 1', [{ path: ['spec', 'b'], value: 2 }])).toBe('spec:\n  a: 1\n  b: 2\n');
  });

  test('edits in one document of many leave the others byte for byte', () => {
    const text = `a: 1\n---\n# second\nb:\n    deep: {x: 1}\n---\nc: [1,   2]\n`;
    const docs = parseAllDocuments(text);
    const second = Array.isArray(docs) ? docs[1] : undefined;
    if (!second) throw new Error('no second document');
    const out = editYaml(text, second, [{ path: ['b', 'deeper'], value: 2 }]);
    expect(out).toBe(`a: 1\n---\n# second\nb:\n    deep: {x: 1}\n    deeper: 2\n---\nc: [1,   2]\n`);
  });

  test('a path through something that is not a mapping is refused, not guessed', () => {
    expect(() => edit('a: [1, 2]\n', [{ path: ['a', 'b'], value: 1 }])).toThrow(EditError);
    expect(() => edit('a: 1\n', [{ path: ['a', 'b'], value: 1 }])).toThrow(EditError);
  });
});
