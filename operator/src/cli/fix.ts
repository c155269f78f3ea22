// `gsp audit --fix`: the corrected manifests, edited in the YAML documents themselves so that
// comments, key order and layout stay as written (the yaml library's Document API). What is
// fixed: a terminationGracePeriodSeconds under a container moves to the pod spec, and where a
// policy governs the Deployment, the fields its plan writes (readiness probe, preStop hook, grace
// period) are set — the values the operator would set, without its bookkeeping (the record and
// mirror annotations are the operator's, not the manifest's).
import type { V1Deployment } from '@kubernetes/client-node';
import { type Document, isMap, isSeq, parseAllDocuments } from 'yaml';
import type { ValidPolicy } from '../policy/types.ts';
import { isRecord } from '../util/is-record.ts';
import { type AuditOptions, govern, misplacedGracePeriods } from './audit.ts';
import { ManifestError } from './manifests.ts';
import { isDeploymentKind, workloadKind } from './workloads.ts';

export interface Fixed {
  workload: string;
  what: string;
}

const POD_SPEC = ['spec', 'template', 'spec'] as const;

function containerIndex(doc: Document, kind: 'containers' | 'initContainers', name: string): number {
  const seq = doc.getIn([...POD_SPEC, kind]);
  if (!isSeq(seq)) return -1;
  return seq.items.findIndex((item) => isMap(item) && item.get('name') === name);
}

/** Fixes one Deployment document in place; returns what it changed. */
function fixDeployment(
  doc: Document,
  policies: ValidPolicy[],
  options: AuditOptions,
  namespaceLabels: Map<string, Record<string, string>>,
): Fixed[] {
  const fixed: Fixed[] = [];
  const before = doc.toJS() as V1Deployment;
  const workload = `${before.metadata?.namespace ?? options.namespace}/${before.metadata?.name ?? ''}`;
  for (const { list: kind, container, value: misplaced } of misplacedGracePeriods(
    before.spec?.template?.spec,
  )) {
    const i = containerIndex(doc, kind, container);
    doc.deleteIn([...POD_SPEC, kind, i, 'terminationGracePeriodSeconds']);
    // The pod-level value, when there is one, is the one in effect: it stays.
    const podLevel = doc.getIn([...POD_SPEC, 'terminationGracePeriodSeconds']);
    if (podLevel === undefined && typeof misplaced === 'number') {
      doc.setIn([...POD_SPEC, 'terminationGracePeriodSeconds'], misplaced);
      fixed.push({
        workload,
        what: `moved terminationGracePeriodSeconds ${misplaced} from ${kind}[${container}] to the pod spec`,
      });
    } else
      fixed.push({
        workload,
        what: `removed ${kind}[${container}].terminationGracePeriodSeconds (the pod spec sets ${String(podLevel)})`,
      });
  }

  const { evaluation } = govern(doc.toJS() as V1Deployment, policies, options, namespaceLabels);
  if (evaluation.kind !== 'Planned' || evaluation.planned.diff.compliant) return fixed;
  const { planned } = evaluation;
  const { plan, diff } = planned;
  for (const change of diff.fields) {
    if (
      change.field === 'terminationGracePeriodSeconds' &&
      plan.terminationGracePeriodSeconds !== undefined
    ) {
      doc.setIn([...POD_SPEC, 'terminationGracePeriodSeconds'], plan.terminationGracePeriodSeconds);
    } else if (change.container !== undefined) {
      const planned = plan.containers.find((c) => c.name === change.container);
      const i = containerIndex(doc, 'containers', change.container);
      if (!planned || i < 0) continue;
      if (change.field === 'readinessProbe' && planned.readinessProbe)
        doc.setIn([...POD_SPEC, 'containers', i, 'readinessProbe'], doc.createNode(planned.readinessProbe));
      else if (change.field === 'preStop' && planned.preStop)
        doc.setIn([...POD_SPEC, 'containers', i, 'lifecycle', 'preStop'], doc.createNode(planned.preStop));
      else continue;
    } else continue;
    fixed.push({
      workload,
      what: `${change.container === undefined ? change.field : `containers[${change.container}].${change.field}`}: ${change.from} -> ${change.to} (policy ${planned.nextRecord.policy})`,
    });
  }
  return fixed;
}

/** The text with every Deployment fixed (Lists are left as they are), and what changed. */
export function fixManifests(
  text: string,
  source: string,
  policies: ValidPolicy[],
  options: AuditOptions,
  namespaceLabels: Map<string, Record<string, string>>,
): { text: string; fixed: Fixed[] } {
  const documents = parseAllDocuments(text);
  const docs = Array.isArray(documents) ? documents : [documents];
  const fixed: Fixed[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new ManifestError(source, 0, doc.errors[0]?.message ?? 'invalid YAML');
    const value = doc.toJS() as unknown;
    const kind = isRecord(value) ? workloadKind(value) : undefined;
    if (!kind || !isDeploymentKind(kind)) continue;
    fixed.push(...fixDeployment(doc, policies, options, namespaceLabels));
  }
  const written = docs.map((d) => d.toString({ flowCollectionPadding: false })).join('');
  return { text: fixed.length > 0 ? written : text, fixed };
}
