// Per-Deployment annotations the operator reads. They live on the Deployment's own metadata
// (not the pod template) so that setting one does not start a rollout.
import { GROUP } from './policy.ts';

/** Every annotation of the operator's starts with this. */
export const ANNOTATION_PREFIX = `${GROUP}/`;

/** "true" opts the Deployment out of every policy; it is then counted as Exempt. */
export const EXCLUDE_ANNOTATION = `${GROUP}/exclude`;
/** Overrides the policy's readinessProbe.path for this Deployment. */
export const READINESS_PATH_ANNOTATION = `${GROUP}/readiness-path`;
/** Overrides the policy's readinessProbe.port (number or name) for this Deployment. */
export const READINESS_PORT_ANNOTATION = `${GROUP}/readiness-port`;

/** True when the annotations opt the Deployment out. Only the exact value "true" counts. */
export function isExcludedByAnnotation(annotations: Record<string, string> | undefined): boolean {
  return annotations?.[EXCLUDE_ANNOTATION] === 'true';
}
/**
 * Comma-separated names of containers the operator never touches (a proxy or log shipper whose
 * shutdown its own project manages, e.g. a Linkerd proxy with wait-before-exit-seconds).
 */
export const SIDECARS_ANNOTATION = `${GROUP}/sidecars`;
/**
 * Written by the operator (Enforce mode): JSON recording the policy, the fields it owns and
 * why. Its absence means the operator manages nothing on the Deployment.
 */
export const APPLIED_ANNOTATION = `${GROUP}/applied`;

/**
 * Field manager of every Deployment write; `kubectl get deploy -o yaml --show-managed-fields`
 * shows it. Its managedFields entry is what the operator owns on a Deployment.
 */
export const FIELD_MANAGER = 'graceful-shutdown-operator';

// Pod-template annotations the operator writes (Enforce mode). Unlike the ones above they live
// on the pod template, so the app can read them through the downward API
// (env[].valueFrom.fieldRef.fieldPath: metadata.annotations['<key>']), and they change with the
// values they mirror, in the same write. docs/policy.md, "Values for the app".

/** Mirrors terminationGracePeriodSeconds, when the operator owns it: "45". */
export const GRACE_PERIOD_SECONDS_ANNOTATION = `${GROUP}/termination-grace-period-seconds`;
/** Mirrors the serving container's preStop sleep, when the operator owns it: "5". */
export const PRESTOP_SECONDS_ANNOTATION = `${GROUP}/prestop-seconds`;
