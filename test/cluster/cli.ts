// CLI over the local control plane:
//   build [--real-node] [--prometheus] [--helm] [--registry]  build (or verify the cache of) the
//                                       binaries, and the node's binaries and images too; Prometheus
//                                       too; Helm too (the chart's tests); the OCI registry too (the
//                                       image push test)
//   start [--nodes] [--real-node] [--prometheus]  start a cluster for manual use (Prometheus
//                                       scrapes the real node's annotated pods); Ctrl-C stops it
import { parseArgs } from 'node:util';
import { buildControlPlane, buildHelm, buildPrometheus, buildRegistry } from './build.ts';
import { LocalCluster, realNodePackages } from './cluster.ts';
import { buildImages } from './images.ts';
import { buildNode } from './node/build.ts';
import { REAL_NODE_NAME, realNodePlacement } from './node/node.ts';
import { ensureDebianPackages } from './node/packages.ts';
import { DEFAULT_SCRAPE_INTERVAL } from './prometheus.ts';
import { untilSignal } from './signals.ts';

const usage = `usage: node test/cluster/cli.ts <build|start> [--nodes N] [--real-node [--prometheus]] [--helm] [--registry]`;

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      nodes: { type: 'string', default: '3' },
      'real-node': { type: 'boolean', default: false },
      prometheus: { type: 'boolean', default: false },
      helm: { type: 'boolean', default: false },
      registry: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const command = positionals[0];
  if (values.help || !command) {
    console.log(usage);
    return;
  }
  const nodes = Number(values.nodes);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 1000)
    throw new Error(`--nodes: want an integer 1..1000, got "${values.nodes}"`);
  if (values.prometheus && !values['real-node'])
    throw new Error('--prometheus needs --real-node: Prometheus scrapes pods on the real node');

  switch (command) {
    case 'build': {
      const bins = await buildControlPlane();
      console.log(`control plane ${bins.kubernetesVersion}: ${bins.dir}`);
      if (values['real-node']) {
        await ensureDebianPackages(realNodePackages, (l) => console.error(l));
        const node = await buildNode();
        console.log(`real node: ${node.dir}`);
        const images = await buildImages({ pauseBinary: node.pause });
        for (const image of Object.values(images)) console.log(`image ${image.ref}: ${image.archive}`);
      }
      if (values.prometheus) {
        const prometheus = await buildPrometheus();
        console.log(`prometheus ${prometheus.version}: ${prometheus.dir}`);
      }
      if (values.helm) {
        const helm = await buildHelm();
        console.log(`helm ${helm.version}: ${helm.helm}`);
      }
      if (values.registry) {
        const registry = await buildRegistry();
        console.log(`registry ${registry.version}: ${registry.registry}`);
      }
      return;
    }
    case 'start': {
      const stop = untilSignal();
      const realNode = values['real-node'];
      const prometheus = values.prometheus;
      const cluster = await LocalCluster.start({ nodes, realNode, prometheus });
      console.log(
        [
          '',
          `Kubernetes ${cluster.kubernetesVersion} is up at ${cluster.server} with ${nodes} kwok nodes${realNode ? ` and the real node ${REAL_NODE_NAME}` : ''}.`,
          ...(cluster.images
            ? [
                `  images: ${Object.values(cluster.images)
                  .map((i) => i.ref)
                  .join(', ')}`,
                `  real-node pods need: ${JSON.stringify(realNodePlacement)}`,
              ]
            : []),
          ...(cluster.prometheusUrl
            ? [
                `  Prometheus: ${cluster.prometheusUrl} (scrapes pods on ${REAL_NODE_NAME} annotated prometheus.io/scrape: "true" every ${DEFAULT_SCRAPE_INTERVAL})`,
              ]
            : []),
          `  export KUBECONFIG=${cluster.kubeconfigPath}`,
          `  ${cluster.binaries.kubectl} --kubeconfig ${cluster.kubeconfigPath} get nodes`,
          `Component logs: ${cluster.workDir}/logs`,
          'Press Ctrl-C to stop.',
        ].join('\n'),
      );
      const signal = await stop;
      console.log(`\n${signal}: stopping the cluster...`);
      await cluster.stop();
      return;
    }
    default:
      throw new Error(`unknown command "${command}"\n${usage}`);
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
