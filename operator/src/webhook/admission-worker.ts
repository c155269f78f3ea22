// The admission worker thread: parses each review, asks the main thread for the snapshot of the
// caches its Deployment needs (webhook/admission-snapshot.ts), decides (webhook/admission.ts) and
// answers. Parsing a maximum-size review and copying its object take tens of milliseconds: here
// they never hold the thread the controllers, the health probes and the Lease renewals share.
import { parentPort, workerData } from 'node:worker_threads';
import { RecordSeal } from '../policy/record-seal.ts';
import { admit } from './admission.ts';
import { type AdmissionSnapshot, contextOf } from './admission-snapshot.ts';
import type { FromWorker, ToWorker } from './admission-workers.ts';
import { decideRequest, parseReview, requestIdentity } from './review.ts';

const port = parentPort;
if (port === null) throw new Error('admission-worker.ts runs as a worker thread');
const { recordKey } = workerData as { recordKey?: Uint8Array };
const seal = recordKey ? new RecordSeal(recordKey) : undefined;
/** Requests waiting for their snapshot, by id. */
const waiting = new Map<number, (snapshot: AdmissionSnapshot | undefined) => void>();

const send = (message: FromWorker) => port.postMessage(message);

port.on('message', (message: ToWorker) => {
  if (message.type === 'snapshot') {
    waiting.get(message.id)?.(message.snapshot);
    waiting.delete(message.id);
    return;
  }
  const parsed = parseReview(new Uint8Array(message.body));
  if (!parsed.ok) {
    send({ type: 'answer', id: message.id, answer: parsed.answer });
    return;
  }
  const request = parsed.request;
  waiting.set(message.id, (snapshot) => {
    const context = snapshot && contextOf(snapshot, seal);
    const answer = decideRequest(request, context && ((r) => admit(r, context)));
    send({ type: 'answer', id: message.id, answer });
  });
  send({ type: 'identity', id: message.id, identity: requestIdentity(request) });
});
