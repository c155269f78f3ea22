import {
  ApiException,
  type ConfigurationOptions,
  KubeConfig,
  Observable,
  type ObservableMiddleware,
} from '@kubernetes/client-node';

export interface KubeConfigOptions {
  /** A kubeconfig file; otherwise $KUBECONFIG, ~/.kube/config, or the in-cluster service account. */
  path?: string;
  /** A context other than the file's current one. */
  context?: string;
}

/** The kubeconfig the operator talks with: a file when given or found, else in-cluster. */
export function loadKubeConfig(options: KubeConfigOptions = {}): KubeConfig {
  const kubeConfig = new KubeConfig();
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
