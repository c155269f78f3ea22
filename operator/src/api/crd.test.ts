import { describe, expect, test } from 'vitest';
import { type JsonSchema, PRINTER_COLUMNS, policyCrd, policyOpenApiSchema, toStructural } from './crd.ts';
import { staleGeneratedFiles } from './generate.ts';
import { fieldReferenceMarkdown, REFERENCE_BEGIN, REFERENCE_END, spliceReference } from './reference.ts';

interface SchemaNode {
  path: string;
  schema: JsonSchema;
}

/** Every node of the schema, with a path like spec.readinessProbe.port or status.workloads[]. */
function walk(schema: JsonSchema, path = ''): SchemaNode[] {
  const nodes: SchemaNode[] = [{ path, schema }];
  const properties = schema.properties as Record<string, JsonSchema> | undefined;
  for (const [name, child] of Object.entries(properties ?? {})) {
    nodes.push(...walk(child, path === '' ? name : `${path}.${name}`));
  }
  if (schema.items) nodes.push(...walk(schema.items as JsonSchema, `${path}[]`));
  if (typeof schema.additionalProperties === 'object') {
    nodes.push(...walk(schema.additionalProperties as JsonSchema, `${path}{}`));
  }
  return nodes;
}

const nodes = walk(policyOpenApiSchema());
const fields = nodes.filter(
  (node) => node.path !== '' && !node.path.endsWith('[]') && !node.path.endsWith('{}'),
);

describe('generated files (crds/, the field reference in docs/policy.md)', () => {
  test('is what the schema generates (run `npm run generate` after changing operator/src/api)', () => {
    expect(staleGeneratedFiles()).toEqual([]);
  });
});

describe('the CRD', () => {
  test('is cluster-scoped, in gracefulshutdown.dev/v1alpha1, with short name gsp and a status subresource', () => {
    const crd = policyCrd() as { spec: Record<string, unknown> & { versions: Record<string, unknown>[] } };
    expect(crd.spec.group).toBe('gracefulshutdown.dev');
    expect(crd.spec.scope).toBe('Cluster');
    expect(crd.spec.names).toMatchObject({ kind: 'GracefulShutdownPolicy', shortNames: ['gsp'] });
    expect((crd.spec.names as { categories: string[] }).categories.length).toBeGreaterThan(0);
    expect(crd.spec.versions).toHaveLength(1);
    expect(crd.spec.versions[0]).toMatchObject({ name: 'v1alpha1', served: true, storage: true });
    expect(crd.spec.versions[0]?.subresources).toEqual({ status: {} });
  });

  test('prints MODE, MATCHED, COMPLIANT, WAITING and AGE by default, each from a field that exists', () => {
    const defaultColumns = PRINTER_COLUMNS.filter((column) => !column.priority).map((c) =>
      c.name.toUpperCase(),
    );
    expect(defaultColumns).toEqual(['MODE', 'MATCHED', 'COMPLIANT', 'WAITING', 'AGE']);
    const paths = new Set(nodes.map((node) => node.path));
    for (const column of PRINTER_COLUMNS) {
      if (column.jsonPath === '.metadata.creationTimestamp') continue;
      // A condition's field, filtered by type: the path is the list's.
      const path = column.jsonPath.replace(/\[\?\(@\.type=='[A-Za-z]+'\)\]\.[a-z]+$/, '');
      expect(paths, column.jsonPath).toContain(path.slice(1));
    }
  });
});

describe('the OpenAPI schema is structural', () => {
  test('no anyOf/oneOf/allOf/not: int-or-string is written as x-kubernetes-int-or-string', () => {
    for (const { path, schema } of nodes) {
      for (const keyword of ['anyOf', 'oneOf', 'allOf', 'not'])
        expect(schema[keyword], `${path} ${keyword}`).toBe(undefined);
    }
    const intOrString = nodes
      .filter((node) => node.schema['x-kubernetes-int-or-string'] === true)
      .map((n) => n.path);
    expect(intOrString).toContain('spec.readinessProbe.port');
    expect(intOrString).toContain('spec.observedLatency.scrape.port');
  });

  test('every node has a type, except int-or-string ones', () => {
    for (const { path, schema } of nodes) {
      if (schema['x-kubernetes-int-or-string'] === true) expect(schema.type, path).toBe(undefined);
      else expect(schema.type, path).toBeTypeOf('string');
    }
  });

  test('no properties together with additionalProperties, and no additionalProperties: false', () => {
    for (const { path, schema } of nodes) {
      expect(schema.properties !== undefined && schema.additionalProperties !== undefined, path).toBe(false);
      expect(schema.additionalProperties, path).not.toBe(false);
    }
  });

  test('no +/-9007199254740991 bounds from z.int()', () => {
    for (const { path, schema } of nodes) {
      for (const bound of ['minimum', 'maximum']) {
        expect(Math.abs(Number(schema[bound] ?? 0)), `${path} ${bound}`).not.toBe(Number.MAX_SAFE_INTEGER);
      }
    }
  });

  test('toStructural refuses what a CRD cannot hold', () => {
    expect(() => toStructural({ anyOf: [{ type: 'string' }, { type: 'boolean' }] })).toThrow(
      /not structural/,
    );
    expect(() => toStructural({ type: 'string', const: 'a' })).toThrow(/const/);
    expect(() =>
      toStructural({
        type: 'object',
        properties: { a: { type: 'string' } },
        additionalProperties: { type: 'string' },
      }),
    ).toThrow(/not structural/);
  });

  test('every field has a description', () => {
    const undescribed = fields.filter((node) => node.path !== 'metadata' && !node.schema.description);
    expect(undescribed.map((node) => node.path)).toEqual([]);
  });

  test('every CEL rule that blames a field names one that exists', () => {
    const paths = new Set(nodes.map((node) => node.path));
    const rules = nodes.flatMap(({ path, schema }) =>
      ((schema['x-kubernetes-validations'] as { fieldPath?: string }[] | undefined) ?? []).map((rule) => ({
        path,
        fieldPath: rule.fieldPath,
      })),
    );
    expect(rules.length).toBeGreaterThanOrEqual(10);
    for (const { path, fieldPath } of rules) {
      if (fieldPath === undefined) continue;
      const blamed = `${path}${fieldPath}`.replace(/^\./, '');
      expect(paths, `${path}: fieldPath ${fieldPath}`).toContain(blamed);
    }
  });

  test("lists are bounded, so the apiserver can estimate the CEL rules' cost", () => {
    for (const { path, schema } of nodes) {
      if (schema.type === 'array') expect(schema.maxItems, path).toBeTypeOf('number');
    }
  });
});

describe('the field reference in docs/policy.md', () => {
  test('lists every field of spec and status', () => {
    const reference = fieldReferenceMarkdown();
    for (const { path } of fields) {
      if (['apiVersion', 'kind', 'metadata', 'spec', 'status'].includes(path)) continue;
      expect(reference).toContain(`| \`${path}\` |`);
    }
  });

  test('is spliced between its markers only', () => {
    const document = `intro\n${REFERENCE_BEGIN}\nold\n${REFERENCE_END}\noutro\n`;
    const spliced = spliceReference(document);
    expect(spliced.startsWith('intro\n')).toBe(true);
    expect(spliced.endsWith('\noutro\n')).toBe(true);
    expect(spliced).not.toContain('\nold\n');
    expect(() => spliceReference('no markers')).toThrow(/GENERATED FIELD REFERENCE/);
  });
});
