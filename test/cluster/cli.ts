// CLI over the local control plane:
//   build            build (or verify the cache of) the control-plane binaries
//   start [--nodes]  start a cluster for manual use; Ctrl-C stops it
import { parseArgs } from 'node:util';
import { buildControlPlane } from './build.ts';
import { LocalCluster } from './cluster.ts';
import { untilSignal } from './signals.ts';

const usage = `usage: node test/cluster/cli.ts <build|start> [--nodes N]`;

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { nodes: { type: 'string', default: '3' }, help: { type: 'boolean', short: 'h' } },
  });
  const command = positionals[0];
  if (values.help || !command) {
    console.log(usage);
    return;
  }
  const nodes = Number(values.nodes);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 1000)
    throw new Error(`--nodes: want an integer 1..1000, got "${values.nodes}"`);

  switch (command) {
    case 'build': {
      const bins = await buildControlPlane();
      console.log(`control plane ${bins.kubernetesVersion}: ${bins.dir}`);
      return;
    }
    case 'start': {
      const stop = untilSignal();
      const cluster = await LocalCluster.start({ nodes });
      console.log(
        [
          '',
          `Kubernetes ${cluster.kubernetesVersion} is up at ${cluster.server} with ${nodes} kwok nodes.`,
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
