/**
 * Zero-loss drain test for any HTTP service:
 *
 *   npm run drain-test -- --cmd "node demo-service/src/main.ts" [options]
 *
 * The command must start a service listening on $PORT (HOST is set to 127.0.0.1) with a
 * readiness path answering 200. Exits 0 when no request was lost, every replaced instance
 * exited 0 and the load was still sending when the rollout ended; 1 otherwise (the report says
 * why), 2 on bad usage.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { killLiveInstances } from './instances.ts';
import { type KeepAliveMode, keepAliveModes } from './load.ts';
import { defaultRolloutOptions, formatReport, type RolloutOptions, runRollout, verdict } from './rollout.ts';

const usage = `usage: npm run drain-test -- --cmd "<command starting a service on $PORT>" [options]
  --instances N            instances before and after the rollout (default ${defaultRolloutOptions.instances}, min 1)
  --rate N                 requests per second, open loop (default ${defaultRolloutOptions.rate})
  --sockets N              keep-alive sockets in the client pool (default ${defaultRolloutOptions.maxSockets})
  --keep-alive MODE        how the client pool treats the server's "Keep-Alive: timeout=N" hint (default ${defaultRolloutOptions.keepAliveMode}):
                             respect  drop idle sockets before N, as Node's agent and undici do
                             ignore   keep idle sockets past N and reuse them, as many clients and proxies do
  --propagation S          seconds new connections still reach a deleted instance (default ${defaultRolloutOptions.propagationSeconds})
  --prestop S              seconds between deletion and SIGTERM, like a preStop sleep (default ${defaultRolloutOptions.preStopSeconds})
  --warmup S / --cooldown S  load before the first and after the last replacement (default 1 / 1)
  --path P                 request path (default ${defaultRolloutOptions.path})
  --ready-path P           readiness path polled on start (default ${defaultRolloutOptions.readyPath})
  --long-path P            also send one request on P straight to each old instance before the rollout
  --max-requests N         bound on requests sent (default ${defaultRolloutOptions.maxRequests}); a load that runs out
                           before the rollout ends fails the run
  --timeout S              bound on the whole run; instances left are SIGKILLed (default ${defaultRolloutOptions.timeoutSeconds})
  --env K=V                extra environment for the service (repeatable)
  --json FILE              write the full report, ledger included, as JSON`;

function number(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed < 0)
    throw new Error(`--${name} wants a number >= 0, got "${value}"`);
  return parsed;
}

async function main(): Promise<number> {
  let options: RolloutOptions;
  let jsonPath: string | undefined;
  try {
    const { values } = parseArgs({
      options: {
        cmd: { type: 'string' },
        instances: { type: 'string' },
        rate: { type: 'string' },
        sockets: { type: 'string' },
        'keep-alive': { type: 'string' },
        propagation: { type: 'string' },
        prestop: { type: 'string' },
        warmup: { type: 'string' },
        cooldown: { type: 'string' },
        path: { type: 'string' },
        'ready-path': { type: 'string' },
        'long-path': { type: 'string' },
        'max-requests': { type: 'string' },
        timeout: { type: 'string' },
        env: { type: 'string', multiple: true },
        json: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    });
    if (values.help) {
      console.log(usage);
      return 0;
    }
    if (!values.cmd) throw new Error('--cmd is required');
    const env: Record<string, string> = {};
    for (const pair of values.env ?? []) {
      const at = pair.indexOf('=');
      if (at < 1) throw new Error(`--env wants K=V, got "${pair}"`);
      env[pair.slice(0, at)] = pair.slice(at + 1);
    }
    const d = defaultRolloutOptions;
    const keepAliveMode = (values['keep-alive'] ?? d.keepAliveMode) as KeepAliveMode;
    if (!keepAliveModes.includes(keepAliveMode))
      throw new Error(`--keep-alive wants ${keepAliveModes.join(' or ')}, got "${keepAliveMode}"`);
    options = {
      command: { shell: values.cmd, env },
      instances: Math.max(1, Math.floor(number(values.instances, d.instances, 'instances'))),
      rate: number(values.rate, d.rate, 'rate'),
      maxSockets: Math.max(1, Math.floor(number(values.sockets, d.maxSockets, 'sockets'))),
      keepAliveMode,
      propagationSeconds: number(values.propagation, d.propagationSeconds, 'propagation'),
      preStopSeconds: number(values.prestop, d.preStopSeconds, 'prestop'),
      warmupSeconds: number(values.warmup, d.warmupSeconds, 'warmup'),
      cooldownSeconds: number(values.cooldown, d.cooldownSeconds, 'cooldown'),
      path: values.path ?? d.path,
      readyPath: values['ready-path'] ?? d.readyPath,
      maxRequests: Math.floor(number(values['max-requests'], d.maxRequests, 'max-requests')),
      requestTimeoutMs: d.requestTimeoutMs,
      timeoutSeconds: number(values.timeout, d.timeoutSeconds, 'timeout'),
      ...(values['long-path'] ? { longRequest: { path: values['long-path'] } } : {}),
    };
    jsonPath = values.json;
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${usage}`);
    return 2;
  }

  // Ctrl-C: stop what we started, by PID, then leave.
  process.once('SIGINT', () => {
    killLiveInstances();
    process.exit(130);
  });
  let report: Awaited<ReturnType<typeof runRollout>>;
  try {
    report = await runRollout(options);
  } catch (error) {
    killLiveInstances();
    console.error(`drain test failed to run: ${(error as Error).message}`);
    return 1;
  }
  console.log(formatReport(report));
  if (jsonPath) writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  return verdict(report).pass ? 0 : 1;
}

process.exitCode = await main();
