// One AdmissionReview, from its bytes to the answer: parse, check, decide (webhook/admission.ts),
// answer. Pure; it runs in the admission worker thread (webhook/admission-worker.ts), so that a
// maximum-size review (tens of ms to parse and copy) never holds the thread the controllers
// share, and in-thread in tests.
import type { AdmissionDecision, AdmissionOutcome, AdmissionRequest } from './admission.ts';

export type AdmissionOutcomeLabel =
  | AdmissionOutcome
  | 'NotSynced'
  | 'Error'
  | 'Busy'
  | 'TooLarge'
  | 'TooManyConnections';

/** What the server sends, and what it logs and counts about it. */
export type ReviewAnswer =
  | { status: 400; text: string }
  | {
      status: 200;
      review: object;
      outcome: AdmissionOutcomeLabel;
      /** The metric's operation label: only those the configuration sends, else "other". */
      operation: 'CREATE' | 'UPDATE' | 'other';
      log: {
        level: 'debug' | 'info' | 'error';
        fields: Record<string, unknown>;
        message: string;
      };
    };

interface AdmissionReview {
  apiVersion?: string;
  kind?: string;
  request?: AdmissionRequest;
}

/** The AdmissionReview answer: always allowed; a JSON patch and warnings when there are any. */
export function admissionResponse(
  uid: string,
  decision: Pick<AdmissionDecision, 'patch' | 'warnings'>,
): object {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    response: {
      uid,
      allowed: true,
      ...(decision.patch.length > 0
        ? { patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(decision.patch)).toString('base64') }
        : {}),
      ...(decision.warnings.length > 0 ? { warnings: decision.warnings } : {}),
    },
  };
}

/** The request of a review body, or the 400 to send. */
export function parseReview(
  body: Uint8Array,
): { ok: true; request: AdmissionRequest } | { ok: false; answer: ReviewAnswer } {
  let review: AdmissionReview;
  try {
    review = JSON.parse(new TextDecoder().decode(body)) as AdmissionReview;
  } catch (error) {
    return { ok: false, answer: { status: 400, text: `not JSON: ${(error as Error).message}\n` } };
  }
  const request = review?.request;
  if (review?.kind !== 'AdmissionReview' || typeof request?.uid !== 'string')
    return {
      ok: false,
      answer: { status: 400, text: 'want an admission.k8s.io/v1 AdmissionReview with request.uid\n' },
    };
  return { ok: true, request };
}

/** Where a request's object lives: what the main thread needs to give the decision its context. */
export function requestIdentity(request: AdmissionRequest): { namespace: string; name: string; uid: string } {
  const object = (request.object ?? {}) as {
    metadata?: { namespace?: unknown; name?: unknown; uid?: unknown };
  };
  const text = (value: unknown) => (typeof value === 'string' ? value : '');
  return {
    namespace: text(object.metadata?.namespace) || text(request.namespace),
    name: text(object.metadata?.name) || text(request.name),
    uid: text(object.metadata?.uid),
  };
}

/**
 * The answer to a parsed request: `admit` decides (undefined: the caches have not synced yet,
 * allowed unchanged); whatever goes wrong inside answers "allowed, unchanged" (fail open).
 */
export function decideRequest(
  request: AdmissionRequest,
  admit: ((request: AdmissionRequest) => AdmissionDecision) | undefined,
): ReviewAnswer {
  const where = { operation: request.operation, namespace: request.namespace, name: request.name };
  // Anyone in the cluster can post here: the label takes only the operations the configuration sends.
  const operation =
    request.operation === 'CREATE' || request.operation === 'UPDATE' ? request.operation : 'other';
  const allowed = (
    outcome: AdmissionOutcomeLabel,
    decision: Pick<AdmissionDecision, 'patch' | 'warnings'>,
    log: Extract<ReviewAnswer, { status: 200 }>['log'],
  ): ReviewAnswer => ({
    status: 200,
    review: admissionResponse(request.uid, decision),
    outcome,
    operation,
    log,
  });
  const unchanged = { patch: [], warnings: [] };
  if (admit === undefined)
    return allowed('NotSynced', unchanged, {
      level: 'info',
      fields: where,
      message: 'admitted unchanged: the caches have not synced yet',
    });
  try {
    const decided = admit(request);
    return allowed(decided.outcome, decided, {
      level: decided.outcome === 'Skipped' ? 'debug' : 'info',
      fields: { ...where, policy: decided.policy, outcome: decided.outcome, dryRun: request.dryRun ?? false },
      message: decided.message,
    });
  } catch (error) {
    // Fail open: the controller catches up with this Deployment later.
    return allowed('Error', unchanged, {
      level: 'error',
      fields: { ...where, err: String((error as Error)?.stack ?? error) },
      message: 'admission failed: admitted unchanged',
    });
  }
}
