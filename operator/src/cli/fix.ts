// `gsp audit --fix`: the corrected manifests, as edits of the text (yaml-edit.ts): only the
// bytes of the fields changed move, and every other line of the file stays as written, JSON
// stays JSON. What is fixed: a terminationGracePeriodSeconds under a container moves to the pod
// spec (any workload kind), and where a policy governs a Deployment, the fields its plan writes
// (readiness probe, preStop hook, grace period) are set — the values the operator would set,
// without its bookkeeping (the record and mirror annotations are the operator's, not the
// manifest's). Lists are fixed item by item. The result is parsed again and must equal the
// intended objects exactly; otherwise the file is left as it is, and the reason given.
import { isDeepStrictEqual } from 'node:util';
import type { V1Container, V1Deployment, V1PodSpec } from '@kubernetes/client-node';
import { type Document, parseAllDocuments } from 'yaml';
import type { ValidPolicy } from '../policy/types.ts';
import { isRecord } from '../util/is-record.ts';
import { type AuditOptions, govern, misplacedGracePeriods } from './audit.ts';
import type { FieldPath as Path } from './manifests.ts';
import { classify, isDeploymentKind, type WorkloadKind } from './workloads.ts';
import { EditError, editYaml } from './yaml-edit.ts';

export interface Fixed {
  workload: string;
  what: string;
}

interface Edit {
  path: Path;
  value: unknown;
}

/** Plain JSON data: the plan's objects without undefined members. */
const plain = (value: unknown): unknown => JSON.parse(JSON.stringify(value)) as unknown;

/**
 * Fixes one workload object in place (a copy of the document's data) and returns the edits that
 * make the text say the same, with what each did.
 */
function fixWorkload(
  object: Record<string, unknown>,
  kind: WorkloadKind,
  podSpec: V1PodSpec,
  policies: ValidPolicy[],
  options: AuditOptions,
  namespaceLabels: Map<string, Record<string, string>>,
): { edits: Edit[]; fixed: Fixed[]; refused: string[] } {
  const edits: Edit[] = [];
  const fixed: Fixed[] = [];
  const refused: string[] = [];
  const meta = isRecord(object.metadata) ? object.metadata : {};
  const workload = `${kind.kind} ${String(meta.namespace ?? options.namespace)}/${String(meta.name ?? '')}`;
  const pod = kind.podSpecPath;
  for (const { list, index, container, value } of misplacedGracePeriods(podSpec)) {
    const podLevel = podSpec.terminationGracePeriodSeconds ?? undefined; // null is unset
    // A value that is not a number ("60", as Helm's quote writes it) is for a person to move:
    // dropping it would lose it, moving it would guess.
    if (podLevel === undefined && !Number.isSafeInteger(value)) {
      refused.push(
        `${workload}: ${list}[${container}].terminationGracePeriodSeconds is ${JSON.stringify(value)}, not a number of seconds: move it by hand`,
      );
      continue;
    }
    const containers = (podSpec[list] ?? []) as (V1Container & Record<string, unknown>)[];
    delete containers[index]?.terminationGracePeriodSeconds;
    edits.push({ path: [...pod, list, index, 'terminationGracePeriodSeconds'], value: undefined });
    // The pod-level value, when there is one, is the one in effect: it stays.
    if (podLevel === undefined) {
      podSpec.terminationGracePeriodSeconds = value as number;
      edits.push({ path: [...pod, 'terminationGracePeriodSeconds'], value });
      fixed.push({
        workload,
        what: `moved terminationGracePeriodSeconds ${String(value)} from ${list}[${container}] to the pod spec`,
      });
    } else
      fixed.push({
        workload,
        what: `removed ${list}[${container}].terminationGracePeriodSeconds (the pod spec sets ${String(podLevel)})`,
      });
  }
  if (!isDeploymentKind(kind) || policies.length === 0) return { edits, fixed, refused };

  const { evaluation } = govern(object as V1Deployment, policies, options, namespaceLabels);
  if (evaluation.kind !== 'Planned' || evaluation.planned.diff.compliant) return { edits, fixed, refused };
  const { plan, diff } = evaluation.planned;
  for (const change of diff.fields) {
    if (
      change.field === 'terminationGracePeriodSeconds' &&
      plan.terminationGracePeriodSeconds !== undefined
    ) {
      podSpec.terminationGracePeriodSeconds = plan.terminationGracePeriodSeconds;
      edits.push({
        path: [...pod, 'terminationGracePeriodSeconds'],
        value: plan.terminationGracePeriodSeconds,
      });
    } else if (change.container !== undefined) {
      const planned = plan.containers.find((c) => c.name === change.container);
      const i = podSpec.containers.findIndex((c) => c.name === change.container);
      const container = podSpec.containers[i];
      if (!planned || !container) continue;
      if (change.field === 'readinessProbe' && planned.readinessProbe) {
        container.readinessProbe = plain(planned.readinessProbe) as V1Container['readinessProbe'];
        edits.push({ path: [...pod, 'containers', i, 'readinessProbe'], value: container.readinessProbe });
      } else if (change.field === 'preStop' && planned.preStop) {
        const preStop = plain(planned.preStop) as NonNullable<V1Container['lifecycle']>['preStop'];
        container.lifecycle = { ...container.lifecycle, preStop };
        edits.push({ path: [...pod, 'containers', i, 'lifecycle', 'preStop'], value: preStop });
      } else continue;
    } else continue;
    fixed.push({
      workload,
      what: `${change.container === undefined ? change.field : `containers[${change.container}].${change.field}`}: ${change.from} -> ${change.to} (policy ${evaluation.policy.name})`,
    });
  }
  return { edits, fixed, refused };
}

/** One edit per path, the last value given (a grace period moved, then set by a policy). */
function lastPerPath(edits: Edit[]): Edit[] {
  const byPath = new Map<string, Edit>();
  for (const edit of edits) {
    const key = JSON.stringify(edit.path);
    byPath.delete(key);
    byPath.set(key, edit);
  }
  return [...byPath.values()];
}

/** The objects of a document to fix: the document itself, or each item of a List. */
function targets(value: Record<string, unknown>): { prefix: Path; object: Record<string, unknown> }[] {
  if (typeof value.kind === 'string' && value.kind.endsWith('List') && Array.isArray(value.items))
    return value.items.flatMap((item, i) => (isRecord(item) ? [{ prefix: ['items', i], object: item }] : []));
  return [{ prefix: [], object: value }];
}

/**
 * The text with every workload fixed, what changed, and what was not fixed and why (the whole
 * file: a document that does not parse, an edit the text cannot take; or one field). `patch`:
 * the file is a kustomize patch, whose objects get the misplaced-field fix only.
 */
export function fixManifests(
  text: string,
  policies: ValidPolicy[],
  options: AuditOptions,
  namespaceLabels: Map<string, Record<string, string>>,
  patch = false,
): { text: string; fixed: Fixed[]; refused: string[] } {
  const documents = parseAllDocuments(text, { logLevel: 'silent' });
  const docs: Document[] = Array.isArray(documents) ? documents : [documents];
  const errors = docs.flatMap((d) => d.errors);
  if (errors.length > 0)
    return {
      text,
      fixed: [],
      refused: [
        errors.every((e) => e.code === 'DUPLICATE_KEY')
          ? 'a key is given twice: which one is meant is for a person to say'
          : 'it is not valid YAML throughout',
      ],
    };
  let expected: unknown[];
  try {
    expected = docs.map((d) => d.toJS() as unknown);
  } catch (error) {
    return { text, fixed: [], refused: [`not read: ${(error as Error).message}`] };
  }
  const perDocument: Edit[][] = [];
  const fixed: Fixed[] = [];
  const refused: string[] = [];
  for (const value of expected) {
    const edits: Edit[] = [];
    perDocument.push(edits);
    if (!isRecord(value)) continue;
    for (const { prefix, object } of targets(value)) {
      const c = classify(object, patch);
      // A part of an object (a patch) gets the misplaced-field fix, never a policy's settings.
      const podSpec =
        c.kind === 'Workload'
          ? c.podSpec
          : c.kind === 'Partial'
            ? c.workload.podSpecPath.reduce<unknown>(
                (at, key) => (isRecord(at) ? at[key] : undefined),
                object,
              )
            : undefined;
      if ((c.kind !== 'Workload' && c.kind !== 'Partial') || !isRecord(podSpec)) continue;
      const done = fixWorkload(
        object,
        c.workload,
        podSpec as unknown as V1PodSpec,
        c.kind === 'Workload' ? policies : [],
        options,
        namespaceLabels,
      );
      edits.push(...done.edits.map((e) => ({ path: [...prefix, ...e.path], value: e.value })));
      fixed.push(...done.fixed);
      refused.push(...done.refused);
    }
  }
  if (fixed.length === 0) return { text, fixed, refused };
  let result = text;
  try {
    // From the last document back: an edit never moves the offsets of an earlier one.
    for (let d = docs.length - 1; d >= 0; d--) {
      const edits = lastPerPath(perDocument[d] ?? []);
      if (edits.length > 0) result = editYaml(result, docs[d] as Document, edits);
    }
  } catch (error) {
    if (error instanceof EditError)
      return { text, fixed: [], refused: [`cannot edit it in place: ${error.message}`] };
    throw error;
  }
  // The edited text must say exactly what was intended, document by document.
  const again = parseAllDocuments(result, { logLevel: 'silent' });
  const reread = (Array.isArray(again) ? again : [again]).map((d) =>
    d.errors.length > 0 ? d.errors : d.toJS(),
  );
  if (reread.length !== expected.length || reread.some((v, i) => !isDeepStrictEqual(v, expected[i])))
    return { text, fixed: [], refused: ['an edit in place would not give the intended objects'] };
  return { text: result, fixed, refused };
}
