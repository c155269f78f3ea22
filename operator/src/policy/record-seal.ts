// The seal on the operator's record (the gracefulshutdown.dev/applied annotation). Anyone who can
// edit a Deployment can write that annotation, so the parts of the record that decide anything
// beyond the Deployment itself — the rollout it names (a slot of the policy's rollout budget), a
// failure (the breaker), a conflict hold, the values Revert writes back — count only when the
// record carries an HMAC made with the operator's key (kept in a Secret of its namespace, which
// tenants cannot read) over the Deployment's UID and the record. A forged record has no valid
// seal; a record copied to another Deployment names the wrong UID; an edited one no longer
// matches (docs/design/rollouts.md).

import { createHmac, timingSafeEqual } from 'node:crypto';
import stableStringify from 'safe-stable-stringify';

/** The smallest key accepted: 256 bits, the HMAC-SHA256 block's security level. */
export const RECORD_KEY_MIN_BYTES = 32;

const VERSION = 'v1';

/**
 * JSON with object keys sorted at every level and nothing dropped (null stays null: in a record
 * it means "absent before", which Revert acts on); undefined members are left out, as
 * JSON.stringify does. Values are those JSON.parse returns. (safe-stable-stringify: the same
 * bytes as the hand-written version it replaced, so seals made before stay valid; a test pins them.)
 */
export function stableJson(value: unknown): string {
  return stableStringify(value) ?? 'null';
}

export class RecordSeal {
  readonly #key: Buffer;

  constructor(key: Uint8Array) {
    if (key.length < RECORD_KEY_MIN_BYTES)
      throw new Error(`the record key has ${key.length} bytes; at least ${RECORD_KEY_MIN_BYTES} are needed`);
    this.#key = Buffer.from(key);
  }

  /** The seal of `body` (a record's stableJson, without its seal) on the Deployment `uid`. */
  sign(uid: string, body: string): string {
    const mac = createHmac('sha256', this.#key).update(`${VERSION}\n${uid}\n${body}`).digest('base64url');
    return `${VERSION}:${mac}`;
  }

  /** True when `seal` is this key's seal of `body` on the Deployment `uid`. */
  verify(uid: string, body: string, seal: string): boolean {
    if (uid === '') return false;
    const expected = Buffer.from(this.sign(uid, body));
    const given = Buffer.from(seal);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}
