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
import { type AdmissionOutcomeLabel, decideRequest, parseReview, type ReviewAnswer } from './review.ts';

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

export type { AdmissionOutcomeLabel };

/**
 * A decide() that parses and decides on the calling thread: `admit` decides once `ready()` says
 * the caches have synced. For tests; the operator decides in a worker thread.
 */
export function inThread(
  admit: (request: AdmissionRequest) => AdmissionDecision,
  ready: () => boolean = () => true,
): (body: Buffer) => Promise<ReviewAnswer> {
  return async (body) => {
    const parsed = parseReview(body);
    if (!parsed.ok) return parsed.answer;
    return decideRequest(parsed.request, ready() ? admit : undefined);
  };
}

/** Refusals are logged at most once per this, with how many there were since. */
const REFUSAL_LOG_EVERY_MS = 10_000;

export interface WebhookServerOptions extends ListenAddress {
  /**
   * The answer to one request body: webhook/admission-workers.ts (a worker thread), or
   * inThread() in tests. Rejects only when it cannot answer at all (then 500).
   */
  decide(body: Buffer): Promise<ReviewAnswer>;
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
          const body = Buffer.concat(chunks);
          chunks.length = 0;
          const started = process.hrtime.bigint();
          // Decided in the admission worker thread (or in-thread in tests); the bytes count
          // against the in-flight budget until the answer, as the worker holds them until then.
          this.#options
            .decide(body)
            .then(
              (answer) => {
                if (answer.status === 400) return send(400, answer.text);
                const { level, fields, message } = answer.log;
                this.#log[level](fields, message);
                const seconds = Number(process.hrtime.bigint() - started) / 1e9;
                this.#options.duration?.observe(
                  { operation: answer.operation, outcome: answer.outcome },
                  seconds,
                );
                send(200, answer.review);
              },
              (error: unknown) => {
                // Fail open: no uid to answer with; the apiserver's failurePolicy Ignore admits.
                this.#options.duration?.observe({ operation: 'other', outcome: 'Error' }, 0);
                this.#log.error(
                  { err: error },
                  'admission failed: answered 500 (admitted unchanged by failurePolicy Ignore)',
                );
                send(500, 'the admission decision failed\n');
              },
            )
            .finally(release);
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
