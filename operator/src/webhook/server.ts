// The admission webhook's HTTPS server: AdmissionReview in, AdmissionReview out. Every replica
// serves it (no leader needed); the decision is webhook/admission.ts's, from the caches only.
// Safe by construction: whatever goes wrong inside (caches not synced yet, a bug) answers
// "allowed, unchanged", and the MutatingWebhookConfiguration says failurePolicy Ignore, so a
// webhook that is down or slow never blocks a Deployment; the controller catches up later.
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Histogram } from 'prom-client';
import type { Logger } from '../log.ts';
import type { ListenAddress } from '../runtime/health.ts';
import type { AdmissionDecision, AdmissionRequest } from './admission.ts';

export const MUTATE_DEPLOYMENTS_PATH = '/mutate-apps-v1-deployment';
/**
 * An AdmissionReview carries the object and the old one, each at most what etcd stores (1.5 MiB
 * by default), with the review around them: anything longer is not from the apiserver.
 */
export const MAX_BODY_BYTES = 3.5 * 1024 * 1024;
/**
 * Request bodies held at once, across connections: anyone in the cluster can post here, and a
 * parsed body takes several times its size. A request past it gets 503 at once; the apiserver
 * then admits the object unchanged (failurePolicy Ignore) and the controller catches up.
 */
export const MAX_BODIES_IN_FLIGHT_BYTES = 16 * 1024 * 1024;
/** Open connections at most (the apiserver keeps a few alive; nothing else needs to connect). */
export const MAX_CONNECTIONS = 256;

export type AdmissionOutcomeLabel =
  | AdmissionDecision['outcome']
  | 'NotSynced'
  | 'Error'
  | 'Busy'
  | 'TooManyConnections';

/** Refusals are logged at most once per this, with how many there were since. */
const REFUSAL_LOG_EVERY_MS = 10_000;

export interface WebhookServerOptions extends ListenAddress {
  /** The decision for one request; only called once `ready()` says so. */
  admit(request: AdmissionRequest): AdmissionDecision;
  /** False until the caches the decision reads have synced: requests are then allowed unchanged. */
  ready(): boolean;
  logger: Logger;
  /** gracefulshutdown_admission_duration_seconds{operation, outcome}. */
  duration?: Histogram<'operation' | 'outcome'>;
  /** How long one request may take to arrive and be answered (the apiserver gives up sooner). */
  requestTimeoutMs?: number;
}

export interface ServingCertificate {
  cert: string;
  key: string;
}

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

/**
 * Listens once a certificate is there (`setCertificate`); a new certificate (renewal, rotation)
 * is used for new connections at once, without a restart. `close()` stops taking connections and
 * waits for requests in flight.
 */
export class WebhookServer {
  readonly #options: WebhookServerOptions;
  readonly #log: Logger;
  #server: Server | undefined;
  #listening: Promise<void> | undefined;
  #port = 0;
  /** Bytes of request bodies received and not yet parsed, across connections. */
  #bufferedBytes = 0;
  #refusedSinceLog = 0;
  #refusalLoggedAt = Number.NEGATIVE_INFINITY;

  constructor(options: WebhookServerOptions) {
    this.#options = options;
    this.#log = options.logger.child({ component: 'webhook' });
  }

  /** The port it listens on (0 before it does). */
  get port(): number {
    return this.#port;
  }

  get listening(): boolean {
    return this.#port !== 0;
  }

  /** Serves `certificate` from now on; the first call starts listening. */
  async setCertificate(certificate: ServingCertificate): Promise<void> {
    if (this.#server) {
      this.#server.setSecureContext(certificate);
      return;
    }
    const timeoutMs = this.#options.requestTimeoutMs ?? 10_000;
    const server = createServer(
      { ...certificate, requestTimeout: timeoutMs, headersTimeout: timeoutMs, minVersion: 'TLSv1.2' },
      (req, res) => {
        const send = (status: number, body: object | string) => {
          const text = typeof body === 'string' ? body : JSON.stringify(body);
          res.writeHead(status, {
            'content-type': typeof body === 'string' ? 'text/plain' : 'application/json',
          });
          res.end(text);
        };
        if (req.method !== 'POST' || req.url?.split('?')[0] !== MUTATE_DEPLOYMENTS_PATH) {
          send(404, `not found: ${req.method} ${req.url}\n`);
          return;
        }
        const declared = Number(req.headers['content-length'] ?? 0);
        if (declared > MAX_BODY_BYTES) {
          this.#refuse('TooLarge');
          send(413, `request body over ${MAX_BODY_BYTES} bytes\n`);
          req.destroy();
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        let refused = false;
        const release = () => {
          this.#bufferedBytes -= size;
          size = 0;
        };
        req.on('close', release);
        req.on('data', (chunk: Buffer) => {
          if (refused) return;
          size += chunk.length;
          this.#bufferedBytes += chunk.length;
          const tooLarge = size > MAX_BODY_BYTES;
          if (tooLarge || this.#bufferedBytes > MAX_BODIES_IN_FLIGHT_BYTES) {
            refused = true;
            release();
            chunks.length = 0;
            this.#refuse(tooLarge ? 'TooLarge' : 'Busy');
            if (tooLarge) send(413, `request body over ${MAX_BODY_BYTES} bytes\n`);
            else send(503, 'too many request bodies in flight; retry\n');
            req.destroy();
          } else chunks.push(chunk);
        });
        req.on('end', () => {
          if (refused) return;
          let review: AdmissionReview;
          try {
            review = JSON.parse(Buffer.concat(chunks).toString('utf8')) as AdmissionReview;
          } catch (error) {
            send(400, `not JSON: ${(error as Error).message}\n`);
            return;
          } finally {
            // The bytes are parsed (or refused): the budget is for bodies still arriving.
            chunks.length = 0;
            release();
          }
          const request = review.request;
          if (review.kind !== 'AdmissionReview' || typeof request?.uid !== 'string') {
            send(400, 'want an admission.k8s.io/v1 AdmissionReview with request.uid\n');
            return;
          }
          send(200, this.#answer(request));
        });
      },
    );
    server.maxConnections = MAX_CONNECTIONS;
    // Node closes a connection past the limit itself; counted like the other refusals.
    server.on('drop', () => this.#refuse('TooManyConnections'));
    this.#server = server;
    this.#listening = new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#options.port, this.#options.host, () => {
        server.off('error', reject);
        this.#port = (server.address() as AddressInfo).port;
        this.#log.info({ host: this.#options.host, port: this.#port }, 'Serving the admission webhook');
        resolve();
      });
    });
    await this.#listening;
  }

  #answer(request: AdmissionRequest): object {
    const started = process.hrtime.bigint();
    let outcome: AdmissionOutcomeLabel;
    let decision: Pick<AdmissionDecision, 'patch' | 'warnings'> = { patch: [], warnings: [] };
    const where = { operation: request.operation, namespace: request.namespace, name: request.name };
    if (!this.#options.ready()) {
      outcome = 'NotSynced';
      this.#log.info(where, 'admitted unchanged: the caches have not synced yet');
    } else {
      try {
        const decided = this.#options.admit(request);
        decision = decided;
        outcome = decided.outcome;
        const level = decided.outcome === 'Skipped' ? 'debug' : 'info';
        this.#log[level](
          { ...where, policy: decided.policy, outcome, dryRun: request.dryRun ?? false },
          decided.message,
        );
      } catch (error) {
        // Fail open: the controller catches up with this Deployment later.
        outcome = 'Error';
        this.#log.error({ ...where, err: error }, 'admission failed: admitted unchanged');
      }
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    // Anyone in the cluster can post here: the label takes only the operations the configuration sends.
    const operation =
      request.operation === 'CREATE' || request.operation === 'UPDATE' ? request.operation : 'other';
    this.#options.duration?.observe({ operation, outcome }, seconds);
    return admissionResponse(request.uid, decision);
  }

  /**
   * A request (or a connection) refused before it was read whole: counted, and logged at most
   * every 10 s with the count since (a flood must not become a flood of log lines); the sender is
   * not named.
   */
  #refuse(outcome: 'TooLarge' | 'Busy' | 'TooManyConnections'): void {
    this.#options.duration?.observe({ operation: 'other', outcome }, 0);
    this.#refusedSinceLog++;
    const now = performance.now();
    if (now - this.#refusalLoggedAt < REFUSAL_LOG_EVERY_MS) return;
    this.#log.warn(
      {
        outcome,
        refused: this.#refusedSinceLog,
        maxBodyBytes: MAX_BODY_BYTES,
        maxInFlightBytes: MAX_BODIES_IN_FLIGHT_BYTES,
        maxConnections: MAX_CONNECTIONS,
      },
      'admission requests refused before they were read: admitted unchanged by failurePolicy Ignore',
    );
    this.#refusalLoggedAt = now;
    this.#refusedSinceLog = 0;
  }

  /** Bytes of request bodies held now (tests). */
  get bufferedBytes(): number {
    return this.#bufferedBytes;
  }

  /** Stops taking connections; resolves once requests in flight are answered. */
  async close(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    await this.#listening?.catch(() => {});
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
    });
    this.#port = 0;
  }
}
