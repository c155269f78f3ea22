import { statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
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

/**
 * Why the operator (or `gsp audit --cluster`) cannot start, in one line a person can act on:
 * printed as it is, without a stack trace.
 */
export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}

export interface KubeConfigOptions {
  /**
   * Kubeconfig files, `:`-separated as in $KUBECONFIG; otherwise $KUBECONFIG, ~/.kube/config,
   * or the in-cluster service account.
   */
  path?: string;
  /** A context other than the file's current one. */
  context?: string;
  /** The environment and home directory to look in (tests). */
  env?: NodeJS.ProcessEnv;
  home?: string;
  serviceAccountTokenPath?: string;
}

const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

const isFile = (path: string) => statSync(path, { throwIfNoEntry: false })?.isFile() === true;

/** One kubeconfig file, or a StartupError naming it and why it cannot be read. */
function readKubeConfigFile(path: string): KubeConfig {
  const kc = new KubeConfig();
  try {
    kc.loadFromFile(path);
  } catch (error) {
    throw new StartupError(`kubeconfig ${path}: ${(error as Error).message.split('\n')[0]}`);
  }
  return kc;
}

/**
 * Several kubeconfig files merged as kubectl merges $KUBECONFIG: files that do not exist are
 * skipped; the first file to name a cluster, user or context wins, and so does the first
 * current-context.
 */
function mergeKubeConfigs(into: KubeConfig, files: string[]): void {
  const configs = files.map(readKubeConfigFile);
  const first = <T extends { name: string }>(lists: T[][]): T[] => {
    const seen = new Map<string, T>();
    for (const item of lists.flat()) if (!seen.has(item.name)) seen.set(item.name, item);
    return [...seen.values()];
  };
  into.loadFromOptions({
    clusters: first(configs.map((c) => c.clusters)),
    users: first(configs.map((c) => c.users)),
    contexts: first(configs.map((c) => c.contexts)),
    currentContext: configs.map((c) => c.currentContext).find((name) => name) ?? '',
  });
}

/**
 * The kubeconfig the operator talks with: the files given (or in $KUBECONFIG), else
 * ~/.kube/config, else the in-cluster service account. Anything else is a StartupError saying
 * what was looked for; never client-node's fallback to http://localhost:8080.
 */
export function loadKubeConfig(options: KubeConfigOptions = {}): KubeConfig {
  const env = options.env ?? process.env;
  const kubeConfig = new PooledKubeConfig();
  const list = options.path ?? (env.KUBECONFIG || undefined);
  const home = options.home ?? env.HOME;
  const homeConfig = home ? join(home, '.kube', 'config') : undefined;
  if (list !== undefined) {
    const files = list.split(delimiter).filter((f) => f !== '');
    const present = files.filter(isFile);
    if (present.length === 0)
      throw new StartupError(
        files.length === 1
          ? `kubeconfig ${files[0]}: no such file`
          : `no kubeconfig file exists of ${files.join(', ')} (KUBECONFIG)`,
      );
    mergeKubeConfigs(kubeConfig, present);
  } else if (homeConfig !== undefined && isFile(homeConfig)) {
    mergeKubeConfigs(kubeConfig, [homeConfig]);
  } else if (
    isFile(options.serviceAccountTokenPath ?? SERVICE_ACCOUNT_TOKEN) &&
    env.KUBERNETES_SERVICE_HOST
  ) {
    kubeConfig.loadFromCluster();
  } else {
    throw new StartupError(
      'no Kubernetes cluster configured: pass --kubeconfig, set KUBECONFIG, create ~/.kube/config, or run in a pod with a service account',
    );
  }
  if (options.context !== undefined) kubeConfig.setCurrentContext(options.context);
  const cluster = kubeConfig.getCurrentCluster();
  if (cluster === null)
    throw new StartupError(
      kubeConfig.currentContext
        ? `kubeconfig: the current context ${kubeConfig.currentContext} names no cluster that is defined`
        : 'kubeconfig: no current context (kubectl config use-context NAME)',
    );
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
