// Wiring only: config -> clients -> informers -> controllers -> manager.run().
import { hostname } from 'node:os';
import {
  AdmissionregistrationV1Api,
  ApisApi,
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubernetesListObject,
  type V1Deployment,
  type V1Namespace,
  type V1Pod,
  type V1Service,
} from '@kubernetes/client-node';
import { FIELD_MANAGER } from './api/annotations.ts';
import { GROUP, PLURAL, VERSION } from './api/policy.ts';
import { ConfigError, loadConfig, usage } from './config.ts';
import { deploymentController } from './controllers/deployment-controller.ts';
import { createOperatorMetrics } from './controllers/metrics.ts';
import { policyStatusController } from './controllers/policy-status-controller.ts';
import { ProbeChecks } from './controllers/probe-checks.ts';
import { ProbeRecheck } from './controllers/probe-recheck.ts';
import { PublishedStatuses, reportController } from './controllers/report-controller.ts';
import { RolloutTracker } from './controllers/rollout-tracker.ts';
import { ShutdownHistory } from './controllers/shutdown-history.ts';
import { shutdownObserver } from './controllers/shutdown-observer.ts';
import { StatusPacer } from './controllers/status-pacer.ts';
import { ClusterView, type PolicyObject } from './controllers/view.ts';
import { createDeploymentWriter } from './kube/apply.ts';
import { loadKubeConfig, StartupError } from './kube/client.ts';
import { createEventRecorder } from './kube/events.ts';
import { readOwnUsername } from './kube/identity.ts';
import {
  deploymentCacheTransform,
  Informer,
  namespaceCacheTransform,
  podCacheTransform,
  serviceCacheTransform,
  shareUnchangedParts,
} from './kube/informer.ts';
import { createLeaseClient } from './kube/lease-client.ts';
import { preflight } from './kube/preflight.ts';
import { loadRecordKey } from './kube/record-key.ts';
import { createReportStore } from './kube/reports.ts';
import { createSecretStore } from './kube/secret-store.ts';
import { createPolicyStatusWriter } from './kube/status.ts';
import { createCaBundleTarget } from './kube/webhook-tls.ts';
import { EstimateCache } from './latency/estimates.ts';
import { PrometheusSource } from './latency/prometheus.ts';
import { LatencyRefresher } from './latency/refresher.ts';
import { ScrapeSource } from './latency/scrape.ts';
import { createLogger } from './log.ts';
import { clusterFacts, OLDEST_SUPPORTED_MINOR, olderThanSupported } from './policy/desired.ts';
import { PlanCache } from './policy/plan.ts';
import { RecordSeal } from './policy/record-seal.ts';
import { owningDeployment } from './policy/shutdowns.ts';
import { ProbeVerifier } from './probes/verifier.ts';
import { fenced, fencedRecorder } from './runtime/fencing.ts';
import { LeadershipLostError, Manager } from './runtime/manager.ts';
import { createRuntimeMetrics } from './runtime/metrics.ts';
import { Trigger } from './runtime/trigger.ts';
import { versionLine } from './version.ts';
import { breakerOpenIn } from './webhook/admission.ts';
import { AdmissionWorkers } from './webhook/admission-workers.ts';
import { CertificateController } from './webhook/certificate-controller.ts';
import { serviceDnsNames } from './webhook/certificates.ts';
import { WebhookServer } from './webhook/server.ts';

/** The labels of the Secrets the operator creates. */
const OPERATOR_LABELS = { 'app.kubernetes.io/name': 'graceful-shutdown-operator' };

/** Status is recomputed at most this often per policy when Deployments churn (more for large ones). */
const statusDebounceMs = 1_000;

async function main(): Promise<void> {
  // `<image> gsp audit -`: the operator's image carries gsp too (docs/audit.md).
  if (process.argv[2] === 'gsp') {
    const gsp = await import('./cli/gsp.ts');
    process.exitCode = await gsp.run(process.argv.slice(3), gsp.processIo);
    return;
  }
  if (process.argv.includes('--version')) {
    process.stdout.write(`${versionLine('graceful-shutdown-operator')}\n`);
    return;
  }
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(`${usage}\n`);
    return;
  }
  const config = loadConfig(process.argv.slice(2), process.env, hostname());
  const logger = createLogger({ level: config.logLevel });
  const kubeConfig = loadKubeConfig(config.kubeconfig === undefined ? {} : { path: config.kubeconfig });
  const metrics = createRuntimeMetrics();
  const operatorMetrics = createOperatorMetrics(metrics.registry);

  // The apiserver answers, the CRD is there, the namespace exists: else one line, and exit 1.
  const version = await preflight(kubeConfig, config.namespace);
  const facts = clusterFacts(version);
  if (olderThanSupported(version))
    logger.warn(
      { server: version.gitVersion },
      `Kubernetes ${version.gitVersion} is older than 1.${OLDEST_SUPPORTED_MINOR}, the oldest supported release: config/default's ValidatingAdmissionPolicies and the webhook's matchConditions need 1.${OLDEST_SUPPORTED_MINOR}; preStop hooks are written as exec sleep`,
    );
  // The webhook tells the operator's own writes by this user (kube/identity.ts).
  const operatorUser = await readOwnUsername(kubeConfig).catch((err: unknown) => {
    logger.warn(
      { err },
      "cannot learn the operator's own username (SelfSubjectReview): the webhook tells its own writes by their field manager",
    );
    return undefined;
  });
  logger.info(
    { server: version.gitVersion, facts, identity: config.identity, user: operatorUser },
    'starting',
  );
  const core = kubeConfig.makeApiClient(CoreV1Api);
  // Seals the records this operator writes, checks those it reads (policy/record-seal.ts).
  const recordKey = await loadRecordKey(
    createSecretStore(core, { namespace: config.namespace, name: config.recordKeySecret }, OPERATOR_LABELS),
    AbortSignal.timeout(30_000),
  );
  const seal = new RecordSeal(recordKey);

  const apps = kubeConfig.makeApiClient(AppsV1Api);
  const custom = kubeConfig.makeApiClient(CustomObjectsApi);
  const informerTimings = (name: string) => ({
    watchdogMs: config.watchdogMs,
    onWatchEnd: (reason: string) => metrics.informerWatchEnds.inc({ informer: name, reason }),
    logger,
  });
  const view = new ClusterView(
    {
      deployments: new Informer<V1Deployment>({
        name: 'deployments',
        kubeConfig,
        path: '/apis/apps/v1/deployments',
        list: (options) => apps.listDeploymentForAllNamespaces(options),
        // What the operator owns comes from its own managedFields entry (policy/ownership.ts);
        // kubectl's last-applied copy of the object is never read.
        transform: deploymentCacheTransform<V1Deployment>(FIELD_MANAGER),
        // Status updates (most events) keep the spec and metadata objects: plans and template
        // hashes memoized by them are not computed again.
        share: shareUnchangedParts,
        ...informerTimings('deployments'),
      }),
      namespaces: new Informer<V1Namespace>({
        name: 'namespaces',
        kubeConfig,
        path: '/api/v1/namespaces',
        list: (options) => core.listNamespace(options),
        transform: namespaceCacheTransform,
        ...informerTimings('namespaces'),
      }),
      policies: new Informer<PolicyObject>({
        name: 'policies',
        kubeConfig,
        path: `/apis/${GROUP}/${VERSION}/${PLURAL}`,
        list: (options) =>
          custom.listClusterCustomObject({
            group: GROUP,
            version: VERSION,
            plural: PLURAL,
            ...options,
          }) as Promise<KubernetesListObject<PolicyObject>>,
        ...informerTimings('policies'),
      }),
      // Services: their ports' names and appProtocols say what a container port speaks, and so
      // which readiness probe can pass there (policy/protocols.ts). Trimmed to selector and ports.
      services: new Informer<V1Service>({
        name: 'services',
        kubeConfig,
        path: '/api/v1/services',
        list: (options) => core.listServiceForAllNamespaces(options),
        transform: serviceCacheTransform,
        ...informerTimings('services'),
      }),
      // Pods, for the Scrape source, probe checks and the shutdown observer (read from this
      // cache, never listed per pass): only pods of Deployments (a ReplicaSet's, by name),
      // trimmed to what is read.
      pods: new Informer<V1Pod>({
        name: 'pods',
        kubeConfig,
        path: '/api/v1/pods',
        list: (options) => core.listPodForAllNamespaces(options),
        filter: (pod) => owningDeployment(pod) !== undefined,
        transform: podCacheTransform,
        ...informerTimings('pods'),
      }),
    },
    { seal },
  );
  const pods = view.pods as Informer<V1Pod>;
  const services = { inNamespace: (namespace: string) => view.servicesIn(namespace) };

  const tracker = new RolloutTracker();
  const probeVerifier = new ProbeVerifier();
  const shutdownHistory = new ShutdownHistory();
  const estimates = new EstimateCache();
  // One planning per change: the status pass reuses the deployment controller's plans.
  const plans = new PlanCache({ services });
  const podsOf = (deployment: V1Deployment) => view.podsOf(deployment);
  const events = fencedRecorder(createEventRecorder(core, logger, config.identity), () => manager.isLeader());
  // Readiness probe checks run here, outside the reconcile workers (controllers/probe-checks.ts).
  const probeChecks = new ProbeChecks({
    verifier: probeVerifier,
    onCounts: ({ running, queued }) => {
      operatorMetrics.probeChecks.set({ state: 'running' }, running);
      operatorMetrics.probeChecks.set({ state: 'queued' }, queued);
    },
    logger,
  });
  const refresher = new LatencyRefresher({
    view: {
      policies: () => view.parsedPolicies().valid,
      selectedBy: (policy) => view.selectedBy(policy),
      namespaceLabels: (ns) => view.namespaceLabels(ns),
      servicesIn: (ns) => view.servicesIn(ns),
    },
    sources: {
      Prometheus: new PrometheusSource({
        defaultUrl: config.prometheusUrl,
        bearerTokenFile: config.prometheusBearerTokenFile,
        tokenOrigins: config.prometheusTokenOrigins,
        caFile: config.prometheusCaFile,
        timeoutMs: config.latency.timeoutMs,
      }),
      Scrape: new ScrapeSource({
        pods: (namespace) => view.podsIn(namespace),
        timeoutMs: config.latency.timeoutMs,
      }),
    },
    cache: estimates,
    intervalMs: config.latency.refreshMs,
    timeoutMs: config.latency.timeoutMs,
    concurrency: config.latency.concurrency,
    logger,
    metrics: {
      observed: (policy, source, outcome) =>
        operatorMetrics.latencySourceRequests.inc({ policy, source, outcome }),
      requested: (source, seconds) => operatorMetrics.latencySourceDuration.observe({ source }, seconds),
    },
  });
  // The httpGet probes owed to replace tcpSocket fallbacks, checked on running pods by every
  // replica (its webhook reads the verdicts), with the sources the controllers plan with.
  const probeRecheck = new ProbeRecheck({
    view,
    plans,
    planDeps: { estimates, facts, shutdowns: shutdownHistory, probes: probeVerifier },
    verifier: probeVerifier,
    podsOf,
    intervalMs: config.probeRecheckMs,
    logger,
  });
  // Were shutdowns clean? Every pod deletion of a governed Deployment, as it happens.
  const killed = new Trigger<[key: string, policy: string]>();
  pods.addHandlers(
    shutdownObserver({
      view,
      events,
      metrics: operatorMetrics,
      isLeader: () => manager.isLeader(),
      history: shutdownHistory,
      killed,
      logger,
    }),
  );

  // The controllers, each with its watches (what wakes it is declared in its own module).
  const runtime = { logger, metrics };
  const deployments = deploymentController(
    {
      view,
      writer: fenced(createDeploymentWriter(apps), () => manager.isLeader()),
      events,
      estimates,
      requestEstimate: () => refresher.nudge(),
      facts,
      shutdowns: shutdownHistory,
      plans,
      tracker,
      metrics: operatorMetrics,
      seal,
      probes: { verifier: probeVerifier, checks: probeChecks, podsOf },
      rolloutCheckMs: config.rolloutCheckMs,
      resyncMs: config.resyncMs,
    },
    { estimateChanged: refresher.changed, killed, probeChecksDone: probeChecks.done },
    { ...runtime, workers: config.workers },
  );
  // Policy reports: the status pass publishes every workload status, this controller writes them.
  const published = new PublishedStatuses();
  const reports = reportController(
    {
      published,
      store: fenced(createReportStore(kubeConfig.makeApiClient(ApisApi), custom), () => manager.isLeader()),
      metrics: operatorMetrics,
      resyncMs: config.resyncMs,
    },
    runtime,
  );
  const statuses = policyStatusController(
    {
      view,
      writer: fenced(createPolicyStatusWriter(custom), () => manager.isLeader()),
      events,
      estimates,
      probes: probeVerifier,
      shutdowns: shutdownHistory,
      plans,
      facts,
      metrics: operatorMetrics,
      seal,
      resyncMs: config.resyncMs,
      pacer: new StatusPacer({ minMs: statusDebounceMs }),
      published,
      tracker,
    },
    { estimateChanged: refresher.changed, killed, verdictFound: probeRecheck.verdictFound },
    runtime,
  );
  const manager = new Manager({
    logger,
    metrics,
    probeAddress: config.probeAddress,
    metricsAddress: config.metricsAddress,
    gracefulShutdownMs: config.shutdownGraceMs,
    ...(config.leaderElection.enabled
      ? {
          leaderElection: {
            client: createLeaseClient(kubeConfig, {
              namespace: config.namespace,
              name: config.leaderElection.leaseName,
            }),
            identity: config.identity,
            leaseDurationMs: config.leaderElection.leaseDurationMs,
            renewDeadlineMs: config.leaderElection.renewDeadlineMs,
            retryPeriodMs: config.leaderElection.retryPeriodMs,
          },
        }
      : {}),
  });
  const serviceInformer = view.services as Informer<V1Service>;
  manager
    .addSource(view.deployments)
    .addSource(view.namespaces)
    .addSource(view.policies)
    .addSource(pods)
    .addSource(serviceInformer);
  for (const informer of [view.deployments, view.namespaces, view.policies, pods, serviceInformer])
    metrics.informerObjects(informer.name, () => informer.size);
  manager.addController(deployments).addController(statuses).addController(reports);
  manager.addRunnable(refresher).addRunnable(probeChecks).addRunnable(probeRecheck);

  // The admission webhook: every replica serves it, from the same caches (no I/O per request).
  if (config.webhook.enabled) {
    const w = config.webhook;
    // Decided in a worker thread (webhook/admission-worker.ts) with a snapshot of these caches.
    const admissionWorkers = new AdmissionWorkers({
      sources: {
        ready: () => view.policies.hasSynced() && view.namespaces.hasSynced(),
        policies: () => view.parsedPolicies(),
        namespaceLabels: (ns) => view.namespaceLabels(ns),
        estimates,
        facts,
        probes: probeVerifier,
        shutdowns: shutdownHistory,
        services,
        breakerOpen: (name, namespace) => breakerOpenIn(view.policies.get(name), namespace),
        ...(operatorUser === undefined ? {} : { operatorUser }),
      },
      recordKey,
      logger,
    });
    const webhook = new WebhookServer({
      ...w.address,
      logger,
      duration: operatorMetrics.admissionDuration,
      decide: (body) => admissionWorkers.decide(body),
    });
    manager.addRunnable(
      new CertificateController({
        mode: w.certificates,
        store: createSecretStore(
          core,
          { namespace: config.namespace, name: w.secret },
          { ...OPERATOR_LABELS, 'app.kubernetes.io/component': 'webhook' },
        ),
        target:
          w.configuration === undefined
            ? undefined
            : createCaBundleTarget(kubeConfig.makeApiClient(AdmissionregistrationV1Api), w.configuration),
        policy: {
          caValidityMs: w.caValidityMs,
          servingValidityMs: w.servingValidityMs,
          renewBeforeMs: w.renewBeforeMs,
          overlapMs: w.overlapMs,
          dnsNames: [...serviceDnsNames(w.service, config.namespace), ...(w.host ? [w.host] : [])],
        },
        serve: (certificate) => webhook.setCertificate(certificate),
        onLoaded: ({ ca, serving }) => {
          operatorMetrics.webhookCertificateExpiry.set({ certificate: 'ca' }, ca.getTime() / 1000);
          operatorMetrics.webhookCertificateExpiry.set({ certificate: 'serving' }, serving.getTime() / 1000);
        },
        logger,
        checkMs: w.checkMs,
        retryMs: 5_000,
      }),
    );
    manager.addRunnable({
      name: 'webhook-server',
      needLeaderElection: false,
      run: async (signal) => {
        await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
        await webhook.close();
        await admissionWorkers.close();
      },
    });
    manager.readyz.add('webhook', () => {
      if (!webhook.listening) throw new Error('the webhook has no serving certificate yet');
    });
  }
  manager.installSignalHandlers();
  try {
    await manager.run();
    logger.info('stopped');
  } catch (err) {
    if (!(err instanceof LeadershipLostError)) throw err;
    logger.error('leadership lost: exiting so a fresh process campaigns again');
    process.exitCode = 1;
  }
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) {
    process.stderr.write(`configuration error: ${err.message}\n`);
    process.exitCode = 2;
    return;
  }
  if (err instanceof StartupError) {
    process.stderr.write(`error: ${err.message}\n`);
    process.exitCode = 1;
    return;
  }
  process.stderr.write(
    `${JSON.stringify({ level: 'fatal', msg: 'operator failed', err: String((err as Error)?.stack ?? err) })}\n`,
  );
  process.exitCode = 1;
});
