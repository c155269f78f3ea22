// The key that seals the operator's records (policy/record-seal.ts), kept in a Secret of the
// operator's namespace that tenants cannot read. The first replica to start creates it with 32
// random bytes; a replica losing that race reads what the winner wrote. Every replica holds the
// same key: the leader seals, and every replica's webhook and status pass check.
import { randomBytes } from 'node:crypto';
import { RECORD_KEY_MIN_BYTES, RecordSeal } from '../policy/record-seal.ts';
import { ConflictError } from '../runtime/controller.ts';
import type { SecretStore } from './secret-store.ts';

/** The Secret's data key holding the record key. */
export const RECORD_KEY_FIELD = 'key';

/** The seal made from the store's key, creating the key when there is none yet. */
export async function loadRecordSeal(store: SecretStore, signal: AbortSignal): Promise<RecordSeal> {
  return new RecordSeal(await loadRecordKey(store, signal));
}

/** The store's key (at least RECORD_KEY_MIN_BYTES), creating it when there is none yet. */
export async function loadRecordKey(store: SecretStore, signal: AbortSignal): Promise<Uint8Array> {
  for (let attempt = 0; attempt < 2; attempt++) {
    const found = await store.read(signal);
    if (found !== undefined) return keyFrom(found.data, store.description);
    try {
      await store.create(
        { [RECORD_KEY_FIELD]: randomBytes(RECORD_KEY_MIN_BYTES).toString('base64') },
        'Opaque',
        signal,
      );
    } catch (error) {
      // Another replica created it first: read that one.
      if (!(error instanceof ConflictError)) throw error;
    }
  }
  throw new Error(`${store.description}: created, yet not found when read back`);
}

function keyFrom(data: Record<string, string>, description: string): Uint8Array {
  const encoded = data[RECORD_KEY_FIELD];
  if (encoded === undefined)
    throw new Error(
      `${description} has no data.${RECORD_KEY_FIELD}: delete the Secret to have a new key made`,
    );
  const key = Buffer.from(encoded, 'base64');
  if (key.length < RECORD_KEY_MIN_BYTES)
    throw new Error(
      `${description}: data.${RECORD_KEY_FIELD} holds ${key.length} bytes, at least ${RECORD_KEY_MIN_BYTES} are needed`,
    );
  return key;
}
