// The field reference in docs/policy.md, rendered from the same OpenAPI schema as the CRD so
// the documented fields, defaults, bounds and rules cannot drift from what the apiserver enforces.
import { type JsonSchema, policyOpenApiSchema } from './crd.ts';
import type { CelValidation } from './rules.ts';

export const REFERENCE_BEGIN = '<!-- BEGIN GENERATED FIELD REFERENCE (npm run generate) -->';
export const REFERENCE_END = '<!-- END GENERATED FIELD REFERENCE -->';

interface Row {
  field: string;
  type: string;
  defaultValue: string;
  allowed: string;
  description: string;
}

function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

function typeOf(schema: JsonSchema): string {
  if (schema['x-kubernetes-int-or-string'] === true) return 'integer or string';
  if (schema.type === 'array') return `[]${typeOf(schema.items as JsonSchema)}`;
  if (schema.type === 'object' && typeof schema.additionalProperties === 'object') {
    return `map[string]${typeOf(schema.additionalProperties as JsonSchema)}`;
  }
  return schema.format === undefined
    ? String(schema.type)
    : `${String(schema.type)} (${String(schema.format)})`;
}

function defaultOf(schema: JsonSchema): string {
  const value = schema.default;
  if (value === undefined) return '';
  // Objects default to their fields' defaults, listed on those fields.
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return '';
  return `\`${JSON.stringify(value)}\``;
}

function allowedOf(schema: JsonSchema, required: boolean): string {
  const parts: string[] = [];
  if (required) parts.push('required');
  if (Array.isArray(schema.enum)) parts.push(schema.enum.map((v) => `\`${v}\``).join(', '));
  const { minimum, maximum, minLength, maxLength, maxItems, pattern } = schema;
  if (minimum !== undefined && maximum !== undefined) parts.push(`${minimum}–${maximum}`);
  else if (minimum !== undefined) parts.push(`≥ ${minimum}`);
  else if (maximum !== undefined) parts.push(`≤ ${maximum}`);
  if (minLength !== undefined && Number(minLength) > 0) parts.push(`non-empty`);
  if (maxLength !== undefined) parts.push(`≤ ${maxLength} chars`);
  if (maxItems !== undefined) parts.push(`≤ ${maxItems} items`);
  if (schema['x-kubernetes-list-type'] === 'set') parts.push('unique items');
  if (pattern !== undefined) parts.push(`\`${pattern}\``);
  for (const rule of (schema['x-kubernetes-validations'] as CelValidation[] | undefined) ?? []) {
    if (rule.fieldPath === undefined) parts.push(rule.message);
  }
  // Items of a list of scalars and values of a map have no row of their own.
  const element = (schema.type === 'array' ? schema.items : schema.additionalProperties) as
    | JsonSchema
    | undefined;
  if (typeof element === 'object' && element.type !== 'object') {
    const each = allowedOf(element, false);
    if (each !== '') parts.push(`each: ${each}`);
  }
  return parts.join('; ');
}

function rows(schema: JsonSchema, path: string, required: boolean): Row[] {
  const result: Row[] = [
    {
      field: path,
      type: typeOf(schema),
      defaultValue: defaultOf(schema),
      allowed: allowedOf(schema, required),
      description: String(schema.description ?? ''),
    },
  ];
  const element = schema.type === 'array' ? (schema.items as JsonSchema) : schema;
  const prefix = schema.type === 'array' ? `${path}[]` : path;
  const requiredFields = new Set((element.required as string[] | undefined) ?? []);
  for (const [name, child] of Object.entries((element.properties as Record<string, JsonSchema>) ?? {})) {
    result.push(...rows(child, `${prefix}.${name}`, requiredFields.has(name)));
  }
  return result;
}

function table(schema: JsonSchema, path: string): string {
  const lines = ['| Field | Type | Default | Allowed | Description |', '| --- | --- | --- | --- | --- |'];
  for (const row of rows(schema, path, false).slice(1)) {
    lines.push(
      `| \`${row.field}\` | ${cell(row.type)} | ${cell(row.defaultValue)} | ${cell(row.allowed)} | ${cell(row.description)} |`,
    );
  }
  return lines.join('\n');
}

/** Cross-field rules that blame a field: `spec.preStop.seconds`: message. */
function crossFieldRules(schema: JsonSchema, path: string): string[] {
  const found: string[] = [];
  for (const rule of (schema['x-kubernetes-validations'] as CelValidation[] | undefined) ?? []) {
    if (rule.fieldPath !== undefined) found.push(`- \`${path}${rule.fieldPath}\`: ${rule.message}.`);
  }
  const element = schema.type === 'array' ? (schema.items as JsonSchema) : schema;
  const prefix = schema.type === 'array' ? `${path}[]` : path;
  for (const [name, child] of Object.entries((element.properties as Record<string, JsonSchema>) ?? {})) {
    found.push(...crossFieldRules(child, `${prefix}.${name}`));
  }
  return found;
}

export function fieldReferenceMarkdown(): string {
  const properties = policyOpenApiSchema().properties as Record<string, JsonSchema>;
  const spec = properties.spec as JsonSchema;
  const status = properties.status as JsonSchema;
  return [
    REFERENCE_BEGIN,
    '',
    '### spec',
    '',
    table(spec, 'spec'),
    '',
    '### Cross-field rules (CEL in the CRD, the same checks in zod)',
    '',
    ...crossFieldRules(spec, 'spec'),
    '',
    '### status',
    '',
    table(status, 'status'),
    '',
    REFERENCE_END,
  ].join('\n');
}

/** Replaces the generated section of a document, leaving the hand-written text around it. */
export function spliceReference(document: string): string {
  const begin = document.indexOf(REFERENCE_BEGIN);
  const end = document.indexOf(REFERENCE_END);
  if (begin < 0 || end < begin)
    throw new Error(`the document has no ${REFERENCE_BEGIN} ... ${REFERENCE_END} section`);
  return document.slice(0, begin) + fieldReferenceMarkdown() + document.slice(end + REFERENCE_END.length);
}
