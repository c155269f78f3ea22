// Keeps the webhook's certificates: on every replica, reads the Secret, makes the next rotation
// step when one is due (certificates.ts decides), serves the Secret's serving certificate and
// puts its CA bundle into the MutatingWebhookConfiguration. Replicas need no leader for this:
// every write is conditional (create fails if the Secret exists, replace if it changed), so
// when two race, one writes and the other reads the result. A replica that starts later loads
// the same Secret, hence serves a certificate of the same CA.
import { setTimeout as sleep } from 'node:timers/promises';
import type { SecretStore } from '../kube/secret-store.ts';
import type { CaBundleTarget } from '../kube/webhook-tls.ts';
import type { Logger } from '../log.ts';
import { ConflictError } from '../runtime/controller.ts';
import type { Runnable } from '../runtime/manager.ts';
import {
  applyRotation,
  caBundle,
  decodeExternalServing,
  decodeSecretData,
  encodeSecretData,
  notAfter,
  rotationPlan,
  SECRET_TYPE,
  type TlsPolicy,
  TlsSecretError,
  type WebhookTlsState,
} from './certificates.ts';
import type { ServingCertificate } from './server.ts';

export const WEBHOOK_CERTIFICATES = 'webhook-certificates';

export interface CertificateControllerOptions {
  /**
   * Operator: the operator makes, renews and rotates the certificates in the Secret. External:
   * another party keeps the Secret (cert-manager); the operator only serves its tls.crt/tls.key.
   */
  mode?: 'Operator' | 'External';
  store: SecretStore;
  /** Where the CA bundle goes; undefined when another party injects it (cert-manager's CA injector). */
  target: CaBundleTarget | undefined;
  policy: TlsPolicy;
  /** Serves this certificate from now on (the webhook server). */
  serve(certificate: ServingCertificate): Promise<void>;
  logger: Logger;
  /** The Secret is read again at least this often (another replica may have rotated it). */
  checkMs: number;
  /** After a failed pass (apiserver down, RBAC), the next one comes this soon. */
  retryMs: number;
  /** Expiry of what this replica serves, for metrics. */
  onLoaded?(expiry: { ca: Date; serving: Date }): void;
  now?: () => Date;
}

/** A write lost to another replica is retried after a fresh read, this many times per pass. */
const MAX_ATTEMPTS = 5;

export class CertificateController implements Runnable {
  readonly name = WEBHOOK_CERTIFICATES;
  readonly needLeaderElection = false;
  readonly #options: CertificateControllerOptions;
  readonly #log: Logger;
  readonly #now: () => Date;
  #served: string | undefined;
  #injected: string | undefined;
  /** Passes in a row that found no webhook configuration: each waits twice as long, up to checkMs. */
  #notFoundPasses = 0;
  /** The last Secret decoded, by resourceVersion: an unchanged Secret is not parsed again each pass. */
  #decoded: { resourceVersion: string; state: WebhookTlsState } | undefined;

  constructor(options: CertificateControllerOptions) {
    this.#options = options;
    this.#log = options.logger.child({ controller: WEBHOOK_CERTIFICATES });
    this.#now = options.now ?? (() => new Date());
  }

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      let waitMs = this.#options.retryMs;
      try {
        waitMs = await this.sync(signal);
      } catch (error) {
        if (signal.aborted) break;
        // What is served stays as it is: a certificate loaded earlier is still good for a while.
        this.#log.warn({ err: error, retryMs: waitMs }, 'webhook certificates: pass failed');
      }
      // Rejects when the signal aborts: the loop ends then.
      await sleep(waitMs, undefined, { signal }).catch(() => {});
    }
  }

  /** One pass; resolves to how long until the next one. */
  async sync(signal: AbortSignal): Promise<number> {
    if (this.#options.mode === 'External') return this.#serveExternal(signal);
    const { store, policy } = this.#options;
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const stored = await store.read(signal);
      let state: WebhookTlsState | undefined;
      try {
        state = stored ? this.#decode(stored) : undefined;
      } catch (error) {
        if (!(error instanceof TlsSecretError)) throw error;
        this.#log.warn(
          { err: error },
          `webhook certificates: ${store.description} is unusable: replacing it`,
        );
      }
      const now = this.#now();
      const plan = rotationPlan(state, now, policy);
      if (plan.action === 'None' && state) {
        const injected = await this.#publish(state, signal);
        const untilNext = plan.nextCheckAt.getTime() - now.getTime();
        // A configuration not there yet (installed after the operator) is looked for again soon,
        // then less and less often: an install without it is not polled every few seconds.
        this.#notFoundPasses = injected === 'NotFound' ? this.#notFoundPasses + 1 : 0;
        const checkMs =
          this.#notFoundPasses > 0
            ? Math.min(this.#options.checkMs, this.#options.retryMs * 2 ** (this.#notFoundPasses - 1))
            : this.#options.checkMs;
        return Math.max(1_000, Math.min(checkMs, untilNext));
      }
      const next = await applyRotation(state, plan, now, policy);
      // A step must lead somewhere: one that would be due again at once (lifetimes too short
      // for the policy) is not written, so a bad setting cannot become a write loop.
      const after = rotationPlan(next, now, policy);
      if (after.action === plan.action && plan.action !== 'Create') {
        this.#log.error(
          { action: plan.action, reason: 'reason' in plan ? plan.reason : undefined },
          'webhook certificates: the step would be due again at once: not written (check the --webhook-* lifetimes)',
        );
        if (state) await this.#publish(state, signal);
        return this.#options.checkMs;
      }
      try {
        if (stored) await store.replace(encodeSecretData(next), SECRET_TYPE, stored.resourceVersion, signal);
        else await store.create(encodeSecretData(next), SECRET_TYPE, signal);
        this.#log.info(
          {
            action: plan.action,
            reason: 'reason' in plan ? plan.reason : undefined,
            secret: store.description,
          },
          `webhook certificates: ${plan.action}`,
        );
      } catch (error) {
        if (!(error instanceof ConflictError)) throw error;
        this.#log.debug({ attempt }, 'webhook certificates: another replica wrote first: reading again');
      }
    }
    return this.#options.retryMs;
  }

  #decode(stored: { data?: Record<string, string>; resourceVersion: string }): WebhookTlsState {
    if (this.#decoded?.resourceVersion === stored.resourceVersion) return this.#decoded.state;
    const state = decodeSecretData(stored.data);
    this.#decoded = { resourceVersion: stored.resourceVersion, state };
    return state;
  }

  /** Serves what another party keeps in the Secret; never writes it. */
  async #serveExternal(signal: AbortSignal): Promise<number> {
    const { store } = this.#options;
    const stored = await store.read(signal);
    if (!stored) {
      this.#log.warn(
        { secret: store.description },
        'webhook certificates: waiting for the Secret (cert-manager)',
      );
      return this.#options.retryMs;
    }
    const serving = decodeExternalServing(stored.data);
    if (this.#served !== serving.cert) {
      await this.#options.serve(serving);
      this.#served = serving.cert;
      this.#log.info({ secret: store.description }, 'webhook certificates: serving the Secret as it is');
    }
    return this.#options.checkMs;
  }

  /** Serves the state's certificate and injects its bundle, each only when it changed. */
  async #publish(
    state: WebhookTlsState,
    signal: AbortSignal,
  ): Promise<'Injected' | 'Unchanged' | 'NotFound' | undefined> {
    if (this.#served !== state.serving.cert) {
      await this.#options.serve(state.serving);
      this.#served = state.serving.cert;
      const expiry = { ca: notAfter(state.ca.cert), serving: notAfter(state.serving.cert) };
      this.#options.onLoaded?.(expiry);
      this.#log.info(
        { ca: expiry.ca.toISOString(), serving: expiry.serving.toISOString() },
        'webhook certificates: serving',
      );
    }
    const target = this.#options.target;
    if (!target) return undefined;
    const bundle = caBundle(state);
    // Checked every pass, not only on change: a re-applied configuration loses the bundle.
    const result = await target.inject(bundle, signal);
    if (result === 'Injected' || (result === 'NotFound' && this.#injected !== 'NotFound'))
      this.#log.info({ target: target.description, result }, `webhook certificates: caBundle ${result}`);
    this.#injected = result === 'NotFound' ? 'NotFound' : bundle;
    return result;
  }
}
