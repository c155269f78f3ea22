// The main thread's side of the admission worker thread (webhook/admission-worker.ts): hands it
// each review's bytes (transferred, not copied), answers its requests for a snapshot of the
// caches, and restarts it when it dies or takes too long. One worker by default: a decision is
// a few ms once parsed, and the bodies in flight are bounded by the server (MAX_BODIES_IN_FLIGHT_BYTES).
import { Worker } from 'node:worker_threads';
import type { Logger } from '../log.ts';
import { silentLogger } from '../log.ts';
import { type AdmissionSnapshot, type AdmissionSources, takeSnapshot } from './admission-snapshot.ts';
import type { ReviewAnswer } from './review.ts';

export type ToWorker =
  | { type: 'review'; id: number; body: ArrayBuffer }
  | { type: 'snapshot'; id: number; snapshot: AdmissionSnapshot | undefined };

export type FromWorker =
  | { type: 'identity'; id: number; identity: { namespace: string; name: string; uid: string } }
  | { type: 'answer'; id: number; answer: ReviewAnswer };

export interface AdmissionWorkersOptions {
  sources: AdmissionSources;
  /** The record key (kube/record-key.ts), so the worker checks and seals records as the controller does. */
  recordKey?: Uint8Array;
  /** A decision taking longer restarts the worker (it is stuck); the request is answered 500. */
  timeoutMs?: number;
  logger?: Logger;
}

/** The worker's module: the TypeScript source under type stripping, the compiled file in the image. */
const WORKER_URL = new URL(
  `./admission-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`,
  import.meta.url,
);

export class AdmissionWorkers {
  readonly #options: AdmissionWorkersOptions;
  readonly #log: Logger;
  #worker: Worker | undefined;
  #nextId = 0;
  readonly #pending = new Map<
    number,
    { resolve: (answer: ReviewAnswer) => void; reject: (error: Error) => void; timer: NodeJS.Timeout }
  >();
  #closed = false;

  constructor(options: AdmissionWorkersOptions) {
    this.#options = options;
    this.#log = (options.logger ?? silentLogger()).child({ component: 'admission-worker' });
  }

  /** The answer to one review's bytes. Rejects when the worker died or timed out (then answer 500: the apiserver's failurePolicy Ignore admits). */
  decide(body: Buffer): Promise<ReviewAnswer> {
    const worker = this.#start();
    const id = this.#nextId++;
    // Transferred, not copied: a large Buffer.concat result owns its ArrayBuffer whole; a small
    // one may share Node's pool, and is copied into its own.
    const whole = body.byteOffset === 0 && body.byteLength === body.buffer.byteLength;
    const bytes = whole ? new Uint8Array(body.buffer as ArrayBuffer) : Uint8Array.from(body);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#log.error(
          { timeoutMs: this.#timeoutMs },
          'admission decision timed out: restarting the worker',
        );
        this.#restart(new Error('the admission decision timed out'));
      }, this.#timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      worker.postMessage({ type: 'review', id, body: bytes.buffer } satisfies ToWorker, [bytes.buffer]);
    });
  }

  /** Started (tests, readiness). */
  get running(): boolean {
    return this.#worker !== undefined;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const worker = this.#worker;
    this.#worker = undefined;
    this.#failAll(new Error('the admission workers are closed'));
    await worker?.terminate();
  }

  get #timeoutMs(): number {
    return this.#options.timeoutMs ?? 5_000;
  }

  #start(): Worker {
    if (this.#closed) throw new Error('the admission workers are closed');
    if (this.#worker) return this.#worker;
    const worker = new Worker(WORKER_URL, {
      workerData: { recordKey: this.#options.recordKey },
      // A review is at most 3.5 MiB, parsed and copied a few times that: a small old generation
      // makes the worker collect early instead of growing toward the pod's limit (past it, the
      // worker dies and is restarted; the review is admitted unchanged).
      resourceLimits: { maxOldGenerationSizeMb: 64 },
    });
    worker.on('message', (message: FromWorker) => this.#onMessage(worker, message));
    worker.on('error', (error) => {
      this.#log.error({ err: error }, 'admission worker failed: restarting it');
      this.#restart(error);
    });
    worker.on('exit', (code) => {
      if (this.#worker !== worker) return;
      this.#worker = undefined;
      if (!this.#closed) this.#log.warn({ code }, 'admission worker exited');
      this.#failAll(new Error(`the admission worker exited (${code})`));
    });
    worker.unref();
    this.#worker = worker;
    return worker;
  }

  #onMessage(worker: Worker, message: FromWorker): void {
    if (message.type === 'identity') {
      let snapshot: AdmissionSnapshot | undefined;
      try {
        snapshot = takeSnapshot(this.#options.sources, message.identity);
      } catch (error) {
        this.#log.error({ err: error }, 'admission snapshot failed: admitted unchanged');
      }
      worker.postMessage({ type: 'snapshot', id: message.id, snapshot } satisfies ToWorker);
      return;
    }
    const pending = this.#pending.get(message.id);
    if (!pending) return;
    this.#pending.delete(message.id);
    clearTimeout(pending.timer);
    pending.resolve(message.answer);
  }

  #restart(error: Error): void {
    const worker = this.#worker;
    this.#worker = undefined;
    this.#failAll(error);
    void worker?.terminate();
  }

  #failAll(error: Error): void {
    for (const { reject, timer } of this.#pending.values()) {
      clearTimeout(timer);
      reject(error);
    }
    this.#pending.clear();
  }
}
