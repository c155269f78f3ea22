// Whether a pod spec has the shape the planner reads: lists where Kubernetes has lists, objects
// where it has objects. The apiserver's decoding guarantees it for what it sends; a manifest on
// disk or a request that did not come from the apiserver may break it. Shared by the admission
// webhook (which refuses to plan such a request) and `gsp audit` (which reports the field).
import { isRecord } from '../util/is-record.ts';

/** Absent, or of the type wanted. */
export const optional = (value: unknown, is: (v: unknown) => boolean) =>
  value === undefined || value === null || is(value);
export const isStringMap = (value: unknown) =>
  isRecord(value) && Object.values(value).every((v) => typeof v === 'string');
const isStringList = (value: unknown) => Array.isArray(value) && value.every((a) => typeof a === 'string');

/** The first field of a container that is not in shape, relative to it; undefined when it is. */
function malformedContainerField(c: Record<string, unknown>): string | undefined {
  if (typeof c.name !== 'string') return 'name';
  if (!optional(c.image, (v) => typeof v === 'string')) return 'image';
  if (!optional(c.ports, (v) => Array.isArray(v) && v.every(isRecord))) return 'ports';
  for (const field of ['env', 'volumeMounts'] as const)
    if (!optional(c[field], (v) => Array.isArray(v) && v.every(isRecord))) return field;
  for (const field of ['command', 'args'] as const) if (!optional(c[field], isStringList)) return field;
  if (!optional(c.lifecycle, isRecord)) return 'lifecycle';
  const lifecycle = (c.lifecycle ?? {}) as Record<string, unknown>;
  for (const hook of ['preStop', 'postStart'] as const)
    if (!optional(lifecycle[hook], isRecord)) return `lifecycle.${hook}`;
  for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe'] as const)
    if (!optional(c[probe], isRecord)) return probe;
  return undefined;
}

/**
 * The path of the first field of the pod spec (at `path`) that is not in shape; undefined when
 * it is. With `partial`, containers may be absent (a patch sets other fields).
 */
export function malformedPodSpecField(podSpec: unknown, path: string, partial = false): string | undefined {
  if (!isRecord(podSpec)) return path;
  if (!optional(podSpec.terminationGracePeriodSeconds, Number.isSafeInteger))
    return `${path}.terminationGracePeriodSeconds`;
  for (const list of ['containers', 'initContainers'] as const) {
    const containers = podSpec[list];
    if ((containers === undefined || containers === null) && (partial || list === 'initContainers')) continue;
    if (!Array.isArray(containers)) return `${path}.${list}`;
    for (const [i, c] of containers.entries()) {
      const at = `${path}.${list}[${i}]`;
      if (!isRecord(c)) return at;
      const field = malformedContainerField(c);
      if (field !== undefined) return `${at}.${field}`;
    }
  }
  return undefined;
}
