// How far a Deployment is from a plan, and what it has now.
import type { V1Deployment } from '@kubernetes/client-node';
import { GRACE_PERIOD_SECONDS_ANNOTATION, PRESTOP_SECONDS_ANNOTATION } from '../api/annotations.ts';
import type { ShutdownSettings } from '../api/policy.ts';
import {
  currentGraceSeconds,
  describeHandler,
  describeProbe,
  handlerSatisfies,
  preStopSummary,
  probeSatisfies,
  regularContainers,
} from './podspec.ts';
import type { ShutdownPlan } from './types.ts';

export type ChangedField = 'terminationGracePeriodSeconds' | 'readinessProbe' | 'preStop';

/** A pod-template annotation the plan writes with another value; from undefined: missing. */
export interface AnnotationChange {
  key: string;
  from?: string;
  to: string;
}

/** One field the plan would change. `missing`: the Deployment has no value at all. */
export interface FieldChange {
  field: ChangedField;
  container?: string;
  missing: boolean;
  from: string;
  to: string;
  /** The annotation mirroring this field, when the plan writes it with another value. */
  annotation?: AnnotationChange;
}

export interface DiffResult {
  /** Every field the plan writes already has the planned value. */
  compliant: boolean;
  /** Human-readable, e.g. "containers[web].readinessProbe: missing -> httpGet /readyz:8080". */
  changes: string[];
  /** The same changes, structured (for reasons and metrics). */
  fields: FieldChange[];
}

/**
 * A change in words. `withAnnotation` false leaves out the operator's mirror annotation (its
 * bookkeeping, which a manifest does not carry: `gsp audit` speaks of the fields only).
 */
export function describeChange(change: FieldChange, withAnnotation = true): string {
  const where =
    change.container === undefined ? change.field : `containers[${change.container}].${change.field}`;
  const annotation =
    change.annotation === undefined || !withAnnotation
      ? ''
      : ` (annotation ${change.annotation.key}: ${change.annotation.from === undefined ? 'missing' : JSON.stringify(change.annotation.from)} -> ${JSON.stringify(change.annotation.to)})`;
  return `${where}: ${change.from} -> ${change.to}${annotation}`;
}

/** The pod template's annotations (where the downward API reads them). */
export function templateAnnotations(deployment: V1Deployment): Record<string, string> {
  return deployment.spec?.template?.metadata?.annotations ?? {};
}

/**
 * Compares the fields the plan writes with the Deployment's, the way server-side apply would
 * merge them: a planned field is satisfied when the Deployment has the same value after the
 * apiserver's defaults (scheme HTTP, successThreshold 1, ...); fields the plan does not write
 * are not compared.
 *
 * The annotations mirroring a field (plan.annotations) count only together with that field: a
 * missing or stale annotation beside a field that already has its value is no difference, since
 * writing it alone would restart every pod while nothing they run changes. It is attached to its
 * field's change when both differ, and comes with the next write that changes the pod template
 * anyway (withMirrorAnnotations in ownership.ts).
 */
export function diffDeployment(deployment: V1Deployment, plan: ShutdownPlan): DiffResult {
  const fields: FieldChange[] = [];
  const annotations = templateAnnotations(deployment);
  const annotationChange = (key: string): { annotation?: AnnotationChange } => {
    const to = plan.annotations?.[key];
    const from = annotations[key];
    if (to === undefined || to === from) return {};
    return { annotation: { key, ...(from === undefined ? {} : { from }), to } };
  };
  const planned = plan.terminationGracePeriodSeconds;
  const current = currentGraceSeconds(deployment);
  if (planned !== undefined && planned !== current) {
    fields.push({
      field: 'terminationGracePeriodSeconds',
      missing: deployment.spec?.template?.spec?.terminationGracePeriodSeconds === undefined,
      from: String(current),
      to: String(planned),
      ...annotationChange(GRACE_PERIOD_SECONDS_ANNOTATION),
    });
  }
  const byName = new Map(regularContainers(deployment).map((c) => [c.name, c]));
  for (const containerPlan of plan.containers) {
    const container = byName.get(containerPlan.name);
    const probe = containerPlan.readinessProbe;
    if (probe !== undefined && !probeSatisfies(container?.readinessProbe, probe)) {
      const existing = container?.readinessProbe;
      // Same target, different timing: show the timing so the change is visible.
      const withTiming = describeProbe(existing) === describeProbe(probe);
      fields.push({
        field: 'readinessProbe',
        container: containerPlan.name,
        missing: existing === undefined,
        from: describeProbe(existing, withTiming),
        to: describeProbe(probe, withTiming),
      });
    }
    const preStop = containerPlan.preStop;
    if (preStop !== undefined && !handlerSatisfies(container?.lifecycle?.preStop, preStop)) {
      const existing = container?.lifecycle?.preStop;
      fields.push({
        field: 'preStop',
        container: containerPlan.name,
        missing: existing === undefined,
        from: describeHandler(existing),
        to: describeHandler(preStop),
        ...(containerPlan.name === plan.servingContainer ? annotationChange(PRESTOP_SECONDS_ANNOTATION) : {}),
      });
    }
  }
  return { compliant: fields.length === 0, changes: fields.map((c) => describeChange(c)), fields };
}

/**
 * What the Deployment has now, in the status's terms: its grace period (30 when unset, as the
 * apiserver defaults it), the longest readable preStop wait among its containers, and the
 * readiness probe of the serving container (or of the first container with an httpGet one).
 */
export function currentSettings(deployment: V1Deployment, servingContainer?: string): ShutdownSettings {
  const settings: ShutdownSettings = { terminationGracePeriodSeconds: currentGraceSeconds(deployment) };
  const containers = regularContainers(deployment);
  for (const container of containers) {
    const summary = preStopSummary(container.lifecycle?.preStop);
    if (
      summary !== undefined &&
      (settings.preStop === undefined || summary.seconds > settings.preStop.seconds)
    ) {
      settings.preStop = summary;
    }
  }
  const withProbe =
    servingContainer === undefined
      ? containers.find((c) => c.readinessProbe?.httpGet !== undefined)
      : containers.find((c) => c.name === servingContainer);
  const httpGet = withProbe?.readinessProbe?.httpGet;
  if (httpGet !== undefined) settings.readinessProbe = { path: httpGet.path ?? '/', port: httpGet.port };
  return settings;
}
