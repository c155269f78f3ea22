import { describe, expect, test } from 'vitest';
import { ConfigError, flagReference, loadConfig, usage } from './config.ts';

const HOST = 'node-a';

/** The ConfigError message loadConfig throws, failing the test when it does not throw one. */
function configError(argv: string[], env: NodeJS.ProcessEnv = {}): string {
  try {
    loadConfig(argv, env, HOST);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error(`loadConfig(${JSON.stringify(argv)}, ${JSON.stringify(env)}) did not throw`);
}

describe('loadConfig defaults', () => {
  const config = loadConfig([], {}, HOST);

  test('leader election on with client-go timings', () => {
    expect(config.leaderElection).toEqual({
      enabled: true,
      leaseName: 'graceful-shutdown-operator',
      leaseDurationMs: 15_000,
      renewDeadlineMs: 10_000,
      retryPeriodMs: 2_000,
    });
  });

  test('listen addresses, workers and the rest', () => {
    expect(config.probeAddress).toEqual({ host: '0.0.0.0', port: 8081 });
    expect(config.metricsAddress).toEqual({ host: '0.0.0.0', port: 8080 });
    expect(config.workers).toBe(4);
    expect(config.logLevel).toBe('info');
    expect(config.namespace).toBe('graceful-shutdown-system');
    expect(config.kubeconfig).toBeUndefined();
    expect(config.prometheusUrl).toBeUndefined();
    expect(config.rolloutCheckMs).toBe(5_000);
    expect(config.probeRecheckMs).toBe(60_000);
    expect(config.resyncMs).toBe(300_000);
  });

  test('the webhook: on, its Service, Secret and configuration names, a year-long CA, 30-day certificates', () => {
    expect(config.webhook).toEqual({
      enabled: true,
      address: { host: '0.0.0.0', port: 9443 },
      service: 'graceful-shutdown-operator-webhook',
      host: undefined,
      certificates: 'Operator',
      configuration: 'graceful-shutdown-operator',
      secret: 'graceful-shutdown-operator-webhook-tls',
      caValidityMs: 365 * 86_400_000,
      servingValidityMs: 30 * 86_400_000,
      renewBeforeMs: 7 * 86_400_000,
      overlapMs: 3_600_000,
      checkMs: 60_000,
    });
  });

  test('identity falls back to hostname-pid', () => {
    expect(config.identity).toBe(`${HOST}-${process.pid}`);
  });

  test('an empty environment variable counts as unset', () => {
    const fromEmpty = loadConfig([], { WORKERS: '', POD_NAME: '', LEADER_ELECT: '' }, HOST);
    expect(fromEmpty.workers).toBe(4);
    expect(fromEmpty.identity).toBe(`${HOST}-${process.pid}`);
    expect(fromEmpty.leaderElection.enabled).toBe(true);
  });
});

describe('loadConfig sources', () => {
  test('environment variables are the fallback', () => {
    const config = loadConfig(
      [],
      {
        POD_NAMESPACE: 'ops',
        POD_NAME: 'operator-7d9f-abcde',
        LEADER_ELECT: 'false',
        WORKERS: '8',
        PROBE_ADDRESS: '127.0.0.1:9000',
        PROMETHEUS_URL: 'http://prometheus.monitoring:9090',
        KUBECONFIG: '/tmp/kubeconfig',
      },
      HOST,
    );
    expect(config.namespace).toBe('ops');
    expect(config.identity).toBe('operator-7d9f-abcde');
    expect(config.leaderElection.enabled).toBe(false);
    expect(config.workers).toBe(8);
    expect(config.probeAddress).toEqual({ host: '127.0.0.1', port: 9000 });
    expect(config.prometheusUrl).toBe('http://prometheus.monitoring:9090');
    expect(config.kubeconfig).toBe('/tmp/kubeconfig');
  });

  test('flags override the environment', () => {
    const config = loadConfig(
      [
        '--namespace',
        'from-flag',
        '--identity=flag-id',
        '--leader-elect',
        'true',
        '--workers',
        '2',
        '--metrics-address',
        ':9100',
        '--log-level',
        'debug',
      ],
      {
        POD_NAMESPACE: 'from-env',
        POD_NAME: 'env-id',
        LEADER_ELECT: 'false',
        WORKERS: '8',
        METRICS_ADDRESS: '127.0.0.1:1',
        LOG_LEVEL: 'error',
      },
      HOST,
    );
    expect(config.namespace).toBe('from-flag');
    expect(config.identity).toBe('flag-id');
    expect(config.leaderElection.enabled).toBe(true);
    expect(config.workers).toBe(2);
    // An empty host means all interfaces.
    expect(config.metricsAddress).toEqual({ host: '0.0.0.0', port: 9100 });
    expect(config.logLevel).toBe('debug');
  });

  test('leader election timings from flags', () => {
    const config = loadConfig(
      ['--lease-duration-ms', '30000', '--renew-deadline-ms', '20000', '--retry-period-ms', '5000'],
      {},
      HOST,
    );
    expect(config.leaderElection).toMatchObject({
      leaseDurationMs: 30_000,
      renewDeadlineMs: 20_000,
      retryPeriodMs: 5_000,
    });
  });
});

describe('loadConfig rejects bad values, naming the flag', () => {
  test.each<[string, string[], NodeJS.ProcessEnv, string]>([
    ['workers below 1', ['--workers', '0'], {}, '--workers:'],
    ['workers not an integer', ['--workers', '1.5'], {}, '--workers:'],
    ['workers above 64', ['--workers', '65'], {}, '--workers:'],
    ['probe address without port', ['--probe-address', 'nope'], {}, '--probe-address:'],
    ['metrics address port out of range', ['--metrics-address', '0.0.0.0:70000'], {}, '--metrics-address:'],
    ['workers from the environment', [], { WORKERS: 'abc' }, 'WORKERS (--workers):'],
    ['leader-elect not a boolean', [], { LEADER_ELECT: 'maybe' }, 'LEADER_ELECT (--leader-elect):'],
    ['unknown log level', ['--log-level', 'loud'], {}, '--log-level:'],
    ['prometheus url not http(s)', ['--prometheus-url', 'ftp://x'], {}, '--prometheus-url:'],
    ['negative duration', ['--resync-ms=-1'], {}, '--resync-ms:'],
    ['duration not a number', [], { RESYNC_MS: 'soon' }, 'RESYNC_MS (--resync-ms):'],
  ])('%s', (_title, argv, env, prefix) => {
    expect(configError(argv, env).slice(0, prefix.length)).toBe(prefix);
  });

  test('the message quotes the bad value', () => {
    expect(configError(['--log-level', 'loud'])).toContain('(got "loud")');
    expect(configError([], { WORKERS: 'abc' })).toContain('(got "abc")');
  });

  test('an unknown flag is rejected with the usage', () => {
    const message = configError(['--wrokers', '3']);
    expect(message).toContain('--wrokers');
    expect(message).toContain(usage);
    expect(usage).toContain('--workers');
    expect(usage).toContain('[WORKERS]');
  });

  test('a positional argument is rejected', () => {
    expect(configError(['extra'])).toContain(usage);
  });

  test('lease duration must exceed the renew deadline', () => {
    expect(configError(['--lease-duration-ms', '10000'])).toBe(
      '--lease-duration-ms (10000) must be greater than --renew-deadline-ms (10000)',
    );
    expect(configError([], { LEASE_DURATION_MS: '5000' })).toContain(
      'must be greater than --renew-deadline-ms',
    );
  });

  test('renew deadline must exceed 1.2 x the retry period (client-go jitter)', () => {
    expect(configError(['--renew-deadline-ms', '2000'])).toBe(
      '--renew-deadline-ms (2000) must be greater than 1.2 x --retry-period-ms (2000)',
    );
    expect(configError(['--retry-period-ms', '9000'])).toContain(
      '--renew-deadline-ms (10000) must be greater than 1.2 x --retry-period-ms (9000)',
    );
    expect(loadConfig(['--retry-period-ms', '8000'], {}, HOST).leaderElection.retryPeriodMs).toBe(8000);
  });

  test('durations that drive request loops cannot be 0; the watchdog outlasts a bookmark interval', () => {
    expect(configError(['--watchdog-ms', '0'])).toContain('--watchdog-ms');
    expect(configError(['--retry-period-ms', '0'])).toContain('--retry-period-ms');
    expect(configError(['--watchdog-ms', '30000'])).toContain(
      '--watchdog-ms: must be at least 90000 (bookmarks come about every 60 s)',
    );
    expect(configError(['--relist-ms', '600000'])).toContain('relist-ms');
    expect(loadConfig(['--watchdog-ms', '120000'], {}, HOST).watchdogMs).toBe(120_000);
  });
});

describe('Prometheus credentials: the token goes to named https origins only', () => {
  const TOKEN = ['--prometheus-bearer-token-file', '/var/run/token'];

  test('none by default; origins are normalized and deduplicated, from the flag or the environment', () => {
    expect(loadConfig([], {}, HOST).prometheusTokenOrigins).toEqual([]);
    const config = loadConfig(
      [
        ...TOKEN,
        '--prometheus-url',
        'https://prometheus.monitoring:9090',
        '--prometheus-token-origins',
        'https://Thanos.example:443, https://thanos.example/,https://mimir.example:8443,,',
      ],
      {},
      HOST,
    );
    expect(config.prometheusTokenOrigins).toEqual(['https://thanos.example', 'https://mimir.example:8443']);
    expect(
      loadConfig(TOKEN, { PROMETHEUS_TOKEN_ORIGINS: 'https://thanos.example' }, HOST).prometheusTokenOrigins,
    ).toEqual(['https://thanos.example']);
  });

  test.each([
    ['http', 'http://thanos.example', 'is not https (the token is only sent over https)'],
    ['a path', 'https://thanos.example/api', 'has a path, query or fragment'],
    ['a query', 'https://thanos.example?x=1', 'has a path, query or fragment'],
    ['credentials', 'https://u:p@thanos.example', 'has credentials'],
    ['not a URL', 'thanos.example', 'is not a URL'],
  ])('an entry with %s is refused, quoted, the flag named', (_title, entry, why) => {
    const message = configError([...TOKEN, '--prometheus-token-origins', `https://ok.example,${entry}`]);
    expect(message).toContain(`--prometheus-token-origins: "${entry}" ${why}`);
    expect(configError(TOKEN, { PROMETHEUS_TOKEN_ORIGINS: entry })).toContain(
      `PROMETHEUS_TOKEN_ORIGINS (--prometheus-token-origins): "${entry}" ${why}`,
    );
  });

  test('a token for an http --prometheus-url is refused at start', () => {
    expect(configError([...TOKEN, '--prometheus-url', 'http://prometheus.monitoring:9090/prom'])).toBe(
      '--prometheus-bearer-token-file: the token is only sent over https, and --prometheus-url is http://prometheus.monitoring:9090: use an https URL (--prometheus-ca-file trusts a private CA) or no token',
    );
    // Negative controls: http without a token, https with one.
    expect(loadConfig(['--prometheus-url', 'http://p:9090'], {}, HOST).prometheusUrl).toBe('http://p:9090');
    expect(
      loadConfig([...TOKEN, '--prometheus-url', 'https://p:9090'], {}, HOST).prometheusBearerTokenFile,
    ).toBe('/var/run/token');
  });

  test('a token with nowhere to go, or origins without a token, are refused', () => {
    expect(configError(TOKEN)).toBe(
      '--prometheus-bearer-token-file: the token goes only to the origin of --prometheus-url and to --prometheus-token-origins: set one of them',
    );
    expect(configError(['--prometheus-token-origins', 'https://thanos.example'])).toBe(
      '--prometheus-token-origins needs --prometheus-bearer-token-file',
    );
    expect(
      loadConfig([...TOKEN, '--prometheus-token-origins', 'https://t.example'], {}, HOST).prometheusUrl,
    ).toBe(undefined);
  });

  test('the usage lists the flag', () => {
    expect(usage).toContain('--prometheus-token-origins');
    expect(usage).toContain('[PROMETHEUS_TOKEN_ORIGINS]');
  });
});

describe('webhook settings', () => {
  test('--webhook-certificates External: the Secret and the caBundle are kept by someone else', () => {
    const webhook = loadConfig(['--webhook-certificates', 'External'], {}, HOST).webhook;
    expect(webhook).toMatchObject({ certificates: 'External', configuration: undefined });
    expect(configError(['--webhook-certificates', 'CertManager'])).toContain('--webhook-certificates');
  });

  test('timings that cannot rotate safely are refused with the flags named', () => {
    expect(configError(['--webhook-check-ms', '60000', '--webhook-overlap-ms', '30000'])).toBe(
      '--webhook-check-ms (60000) must be less than --webhook-overlap-ms (30000)',
    );
    expect(
      configError(['--webhook-serving-validity-ms', '100000', '--webhook-renew-before-ms', '50000']),
    ).toBe(
      '--webhook-renew-before-ms (50000) + 60000 ms of backdating must be less than --webhook-serving-validity-ms (100000)',
    );
    expect(
      configError([
        '--webhook-ca-validity-ms',
        '160000',
        '--webhook-renew-before-ms',
        '20000',
        '--webhook-overlap-ms',
        '40000',
        '--webhook-check-ms',
        '1000',
        '--webhook-serving-validity-ms',
        '90000',
      ]),
    ).toContain('must be less than --webhook-ca-validity-ms (160000)');
  });
});

describe('--help and docs/flags.md: every flag with its variable, value, default and what it does', () => {
  test('a boolean flag alone is true; a value after it or with = is read', () => {
    expect(loadConfig(['--webhook'], {}, 'h').webhook.enabled).toBe(true);
    expect(loadConfig(['--leader-elect', '--webhook=false'], {}, 'h')).toMatchObject({
      leaderElection: { enabled: true },
      webhook: { enabled: false },
    });
    expect(loadConfig(['--leader-elect', 'false', '--workers', '2'], {}, 'h')).toMatchObject({
      leaderElection: { enabled: false },
      workers: 2,
    });
    // Not a boolean: a flag without its value is still an error.
    expect(() => loadConfig(['--workers'], {}, 'h')).toThrow(ConfigError);
  });

  test('the usage has a description for each flag, with its default where it has one', () => {
    expect(usage).toContain(
      '  --lease-duration-ms <ms>  [LEASE_DURATION_MS] (default 15000 (15 s))\n      How long a Lease holds without renewal before another replica may take it.',
    );
    expect(usage).toContain('  --log-level <trace|debug|info|warn|error|fatal>  [LOG_LEVEL] (default info)');
    const flags = [...usage.matchAll(/^ {2}--([a-z-]+) /gm)].map((m) => m[1]);
    const descriptions = [...usage.matchAll(/^ {6}\S.*$/gm)];
    expect(flags.length).toBeGreaterThan(30);
    expect(descriptions).toHaveLength(flags.length);
    expect(flagReference().split('\n')).toHaveLength(flags.length + 2);
  });
});
