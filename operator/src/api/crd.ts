// Schema -> CustomResourceDefinition, as a pure function. The zod schema in policy.ts carries
// descriptions, defaults, CEL rules and list types (as metadata); what only a CRD has (names,
// scope, printer columns, subresources) is stated here, once.
import { stringify } from 'yaml';
import { z } from 'zod';
import {
  CATEGORIES,
  CRD_NAME,
  GROUP,
  KIND,
  LIST_KIND,
  PLURAL,
  PolicySpecSchema,
  PolicyStatusSchema,
  SHORT_NAMES,
  SINGULAR,
  VERSION,
} from './policy.ts';

export type JsonSchema = { [key: string]: unknown };

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  jsonPath: string;
  description: string;
  priority?: number;
}

export const PRINTER_COLUMNS: PrinterColumn[] = [
  { name: 'Mode', type: 'string', jsonPath: '.spec.mode', description: 'Audit or Enforce.' },
  {
    name: 'Priority',
    type: 'integer',
    jsonPath: '.spec.priority',
    description: 'Precedence when several policies match.',
    priority: 1,
  },
  {
    name: 'Matched',
    type: 'integer',
    jsonPath: '.status.counts.matched',
    description: 'Deployments matched.',
  },
  {
    name: 'Compliant',
    type: 'integer',
    jsonPath: '.status.counts.compliant',
    description: 'Matched Deployments whose settings meet the policy.',
  },
  {
    name: 'NonCompliant',
    type: 'integer',
    jsonPath: '.status.counts.nonCompliant',
    description: 'Matched Deployments whose settings do not meet the policy.',
    priority: 1,
  },
  {
    name: 'Waiting',
    type: 'integer',
    jsonPath: '.status.counts.waiting',
    description: 'Non-compliant Deployments whose change waits (paused, unhealthy, budget, breaker).',
  },
  {
    name: 'Breaker',
    type: 'string',
    jsonPath: ".status.conditions[?(@.type=='RolloutBreakerOpen')].status",
    description: 'True while a rollout the policy started has failed and no new ones start.',
    priority: 1,
  },
  { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp', description: 'Time since creation.' },
];

const POLICY_DESCRIPTION =
  'GracefulShutdownPolicy sets readiness probes, preStop hooks and termination grace periods on the Deployments it selects, the grace period computed from observed request latency.';

// JSON Schema keywords a CRD's structural schema accepts, in the order they are written (so the
// YAML reads description first); anything else zod emits is a bug to fix here.
const KEYWORD_ORDER = [
  'description',
  'type',
  'format',
  'enum',
  'default',
  'minimum',
  'exclusiveMinimum',
  'maximum',
  'exclusiveMaximum',
  'minLength',
  'maxLength',
  'pattern',
  'minItems',
  'maxItems',
  'x-kubernetes-int-or-string',
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'properties',
  'required',
  'items',
  'additionalProperties',
  'x-kubernetes-validations',
];
const ALLOWED_KEYWORDS = new Set(KEYWORD_ORDER);

function inKeywordOrder(schema: JsonSchema): JsonSchema {
  return Object.fromEntries(
    Object.entries(schema).sort(([a], [b]) => KEYWORD_ORDER.indexOf(a) - KEYWORD_ORDER.indexOf(b)),
  );
}

function isIntOrStringUnion(anyOf: unknown): boolean {
  if (!Array.isArray(anyOf) || anyOf.length !== 2) return false;
  const types = anyOf.map((branch: JsonSchema) => branch.type).sort();
  return types[0] === 'integer' && types[1] === 'string';
}

/**
 * Turns zod's OpenAPI 3.0 output into a structural schema: int-or-string unions, the safe-integer
 * bounds of z.int(), `additionalProperties: false` of strict objects and JS-only date-time
 * patterns have no place in a CRD.
 */
export function toStructural(node: JsonSchema, path = 'schema'): JsonSchema {
  const out: JsonSchema = {};
  for (const [key, value] of Object.entries(node)) {
    if (key === '$schema') continue;
    if (key === 'anyOf') {
      if (!isIntOrStringUnion(value))
        throw new Error(`${path}: anyOf other than int-or-string is not structural`);
      out['x-kubernetes-int-or-string'] = true;
      continue;
    }
    if ((key === 'minimum' || key === 'maximum') && Math.abs(value as number) === Number.MAX_SAFE_INTEGER)
      continue;
    if (key === 'additionalProperties' && value === false) continue;
    if (key === 'pattern' && node.format === 'date-time') continue;
    if (!ALLOWED_KEYWORDS.has(key)) throw new Error(`${path}: keyword ${key} is not allowed in a CRD schema`);
    if (key === 'properties') {
      const properties: JsonSchema = {};
      for (const [name, child] of Object.entries(value as Record<string, JsonSchema>)) {
        properties[name] = toStructural(child, `${path}.${name}`);
      }
      out.properties = properties;
    } else if (key === 'items' || (key === 'additionalProperties' && typeof value === 'object')) {
      out[key] = toStructural(value as JsonSchema, `${path}[]`);
    } else {
      out[key] = value;
    }
  }
  if (out.properties !== undefined && out.additionalProperties !== undefined) {
    throw new Error(`${path}: properties and additionalProperties together are not structural`);
  }
  return inKeywordOrder(out);
}

function openApiSchema(schema: z.ZodType): JsonSchema {
  // io 'input': defaulted fields are optional, as a user writes them.
  return toStructural(z.toJSONSchema(schema, { target: 'openapi-3.0', io: 'input' }) as JsonSchema);
}

export function policyOpenApiSchema(): JsonSchema {
  return {
    description: POLICY_DESCRIPTION,
    type: 'object',
    required: ['spec'],
    properties: {
      apiVersion: {
        description: 'APIVersion defines the versioned schema of this representation of an object.',
        type: 'string',
      },
      kind: {
        description: 'Kind is a string value representing the REST resource this object represents.',
        type: 'string',
      },
      metadata: { type: 'object' },
      spec: openApiSchema(PolicySpecSchema),
      status: openApiSchema(PolicyStatusSchema),
    },
  };
}

export function policyCrd(): JsonSchema {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: CRD_NAME },
    spec: {
      group: GROUP,
      names: {
        kind: KIND,
        listKind: LIST_KIND,
        plural: PLURAL,
        singular: SINGULAR,
        shortNames: SHORT_NAMES,
        categories: CATEGORIES,
      },
      scope: 'Cluster',
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          schema: { openAPIV3Schema: policyOpenApiSchema() },
          subresources: { status: {} },
          additionalPrinterColumns: PRINTER_COLUMNS,
        },
      ],
    },
  };
}

export const CRD_FILE = `${GROUP}_${PLURAL}.yaml`;

const HEADER = '# Generated by `npm run generate` from operator/src/api/policy.ts. Do not edit.\n';

/** Every file under crds/, by name: the CRD and the kustomization that config/crd includes. */
export function generatedCrdFiles(): Map<string, string> {
  const kustomization = {
    apiVersion: 'kustomize.config.k8s.io/v1beta1',
    kind: 'Kustomization',
    resources: [CRD_FILE],
  };
  return new Map([
    [CRD_FILE, HEADER + stringify(policyCrd(), { lineWidth: 0 })],
    ['kustomization.yaml', HEADER + stringify(kustomization)],
  ]);
}
