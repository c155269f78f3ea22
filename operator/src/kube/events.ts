// Records Kubernetes Events (core/v1) on objects, deduplicated so a reconcile loop that keeps
// finding the same problem does not flood the apiserver.
import type { CoreV1Api, V1ObjectReference } from '@kubernetes/client-node';
import type { Logger } from '../log.ts';

export type EventType = 'Normal' | 'Warning';

export interface EventRecorder {
  record(object: V1ObjectReference, type: EventType, reason: string, message: string): void;
}

export const REPORTING_COMPONENT = 'graceful-shutdown-operator';

/** The same (object, reason, message) is recorded at most once per this window. */
const dedupWindowMs = 10 * 60_000;

export function createEventRecorder(core: CoreV1Api, logger: Logger, identity: string): EventRecorder {
  const lastRecorded = new Map<string, number>();
  return {
    record(object, type, reason, message) {
      const key = `${object.uid ?? `${object.namespace}/${object.name}`}|${reason}|${message}`;
      const now = Date.now();
      if (now - (lastRecorded.get(key) ?? Number.NEGATIVE_INFINITY) < dedupWindowMs) return;
      lastRecorded.set(key, now);
      if (lastRecorded.size > 10_000) lastRecorded.clear();
      const namespace = object.namespace ?? 'default';
      const timestamp = new Date(now);
      // Fire and forget: an Event is informational and must never fail a reconcile.
      core
        .createNamespacedEvent({
          namespace,
          body: {
            metadata: { generateName: `${object.name}.`, namespace },
            involvedObject: object,
            type,
            reason,
            message: message.slice(0, 1024),
            source: { component: REPORTING_COMPONENT },
            reportingComponent: REPORTING_COMPONENT,
            reportingInstance: identity,
            firstTimestamp: timestamp,
            lastTimestamp: timestamp,
            count: 1,
          },
        })
        .catch((err: unknown) =>
          logger.warn({ err, object: `${namespace}/${object.name}`, reason }, 'could not record event'),
        );
    },
  };
}
