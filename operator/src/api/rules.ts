// Cross-field rules are written once here, in two languages side by side: CEL for the apiserver
// (x-kubernetes-validations in the generated CRD) and a predicate for zod (the operator's own
// check). The unit and e2e tables prove the two agree.
import type { z } from 'zod';

export interface ValidationRule<T> {
  /** CEL expression, `self` being the value of the field the rule is attached to. */
  rule: string;
  message: string;
  /** The field the rule blames, relative to `self` ('.preStop.seconds'); both sides report it. */
  fieldPath?: string;
  /** The same rule for zod: true when the value is valid. Runs after defaults are applied, like CEL. */
  holds: (value: T) => boolean;
}

/** The CRD form of a rule, as written into `x-kubernetes-validations`. */
export interface CelValidation {
  rule: string;
  message: string;
  fieldPath?: string;
}

export const CEL_VALIDATIONS_KEY = 'x-kubernetes-validations';

function fieldPathSegments(fieldPath: string | undefined): string[] {
  if (fieldPath === undefined) return [];
  if (!/^(\.[A-Za-z][A-Za-z0-9]*)+$/.test(fieldPath)) {
    throw new Error(`fieldPath ${fieldPath}: only dotted field names are supported`);
  }
  return fieldPath.slice(1).split('.');
}

/** Attaches rules to a schema: as a zod refinement, and as metadata the CRD generator emits. */
export function withRules<S extends z.ZodType>(schema: S, rules: ValidationRule<z.output<S>>[]): S {
  const validations: CelValidation[] = rules.map(({ rule, message, fieldPath }) =>
    fieldPath === undefined ? { rule, message } : { rule, message, fieldPath },
  );
  return schema
    .superRefine((value, ctx) => {
      for (const rule of rules) {
        if (!rule.holds(value)) {
          ctx.addIssue({ code: 'custom', message: rule.message, path: fieldPathSegments(rule.fieldPath) });
        }
      }
    })
    .meta({ [CEL_VALIDATIONS_KEY]: validations });
}
