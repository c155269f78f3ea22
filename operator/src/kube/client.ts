import { statSync } from 'node:fs';
import {
  ApiException,
  type ConfigurationOptions,
  KubeConfig,
  Observable,
  type ObservableMiddleware,
  type RequestContext,
} from '@kubernetes/client-node';

type Dispatcher = NonNullable<ReturnType<RequestContext['getDispatcher']>>;

/** Modification time of a file the TLS identity is read from; 0 when it cannot be read. */
function modified(path: string | undefined): number {
  if (path === undefined) return 0;
  try {
    return statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

/**
 * A KubeConfig whose API calls share their connections. client-node 2.0.1 builds a new undici
 * Agent in every `applySecurityAuthentication`, that is for every API call: each call opened its
 * own TLS connection (a handshake on both sides, a SecureContext parsed from the PEMs here) that
 * then idled until undici's keep-alive timeout. This keeps the first Agent per TLS identity (the
 * cluster's server and CA, the user's certificate and key, and the files' modification times, so
 * a rotated certificate file gets a new Agent) and hands it to every call: one pool of
 * keep-alive connections, as client-go's transport cache does. Headers (tokens) are still set per
 * call by client-node.
 */
export class PooledKubeConfig extends KubeConfig {
  #pooled: { identity: string; dispatcher: Dispatcher } | undefined;

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    const fresh = context.getDispatcher();
    if (fresh === undefined) return; // No TLS material: fetch's global dispatcher pools already.
    const identity = this.#tlsIdentity();
    if (this.#pooled?.identity === identity) {
      // The fresh Agent never connected and holds nothing: dropped, not closed (undici's close
      // builds a ClientDestroyedError, a stack trace, for every API call).
      context.setDispatcher(this.#pooled.dispatcher);
      return;
    }
    // Calls in flight on the replaced pool (watches among them) finish on it; close waits for them.
    void this.#pooled?.dispatcher.close();
    this.#pooled = { identity, dispatcher: fresh };
  }

  #tlsIdentity(): string {
    const cluster = this.getCurrentCluster();
    const user = this.getCurrentUser();
    return JSON.stringify([
      cluster?.server,
      cluster?.caData,
      cluster?.caFile,
      modified(cluster?.caFile),
      cluster?.skipTLSVerify,
      cluster?.tlsServerName,
      user?.name,
      user?.certData,
      user?.certFile,
      modified(user?.certFile),
      user?.keyData,
      user?.keyFile,
      modified(user?.keyFile),
    ]);
  }
}

export interface KubeConfigOptions {
  /** A kubeconfig file; otherwise $KUBECONFIG, ~/.kube/config, or the in-cluster service account. */
  path?: string;
  /** A context other than the file's current one. */
  context?: string;
}

/** The kubeconfig the operator talks with: a file when given or found, else in-cluster. */
export function loadKubeConfig(options: KubeConfigOptions = {}): KubeConfig {
  const kubeConfig = new PooledKubeConfig();
  if (options.path !== undefined) kubeConfig.loadFromFile(options.path);
  else kubeConfig.loadFromDefault();
  if (options.context !== undefined) kubeConfig.setCurrentContext(options.context);
  if (kubeConfig.getCurrentCluster() === null) {
    throw new Error('no Kubernetes cluster configured (no kubeconfig and not running in a pod)');
  }
  return kubeConfig;
}

/**
 * Per-call options of a generated API method that tie its HTTP request to `signal`: aborting the
 * signal aborts the request in flight and the call rejects with the signal's reason. client-node
 * hands RequestContext's signal to its fetch; a middleware is how a call sets it. Extends
 * `options` (e.g. from setHeaderOptions) and keeps the client's own middleware (User-Agent).
 */
export function abortOptions(
  signal: AbortSignal,
  options?: ConfigurationOptions<ObservableMiddleware>,
): ConfigurationOptions<ObservableMiddleware> {
  const middleware: ObservableMiddleware = {
    pre: (context) => {
      context.setSignal(signal);
      return new Observable(Promise.resolve(context));
    },
    post: (context) => new Observable(Promise.resolve(context)),
  };
  return {
    ...options,
    middleware: [...(options?.middleware ?? []), middleware],
    middlewareMergeStrategy: 'append',
  };
}

/** The HTTP status of a failed API call or watch, undefined for other errors (network, ...). */
export function httpStatusOf(error: unknown): number | undefined {
  if (error instanceof ApiException) return error.code;
  if (typeof error === 'object' && error !== null) {
    // Watch errors carry statusCode; Status objects in watch ERROR events carry code.
    const { statusCode, code } = error as { statusCode?: unknown; code?: unknown };
    if (typeof statusCode === 'number') return statusCode;
    if (typeof code === 'number') return code;
  }
  return undefined;
}

/** The apiserver's explanation of a failed call: the Status message when the body is one (it may arrive as a string). */
export function apiErrorMessage(error: unknown): string {
  if (error instanceof ApiException) {
    let body: unknown = error.body;
    if (typeof body === 'string') {
      try {
        body = JSON.parse(body);
      } catch {
        return `HTTP ${error.code}: ${body}`;
      }
    }
    const message = (body as { message?: unknown } | undefined)?.message;
    return typeof message === 'string' ? `HTTP ${error.code}: ${message}` : `HTTP ${error.code}`;
  }
  return error instanceof Error ? error.message : String(error);
}
