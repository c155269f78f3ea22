/**
 * Latency profiles for the work endpoint, written as one string (env LATENCY_PROFILE or
 * --latency-profile):
 *   fixed:25                    always 25 ms
 *   uniform:10-100              uniform between 10 and 100 ms
 *   lognormal:p50=20,p99=250    log-normal fitted to a median and a 99th percentile, in ms
 *   lognormal:p50=20,p99=1000,max=1500   the same with samples cut at max (a service with a
 *                               timeout): a drain deadline above max loses no request
 * A log-normal has the long right tail real services show, so p99 is meaningful to observe.
 */
import { z } from 'zod';

export type LatencyProfile =
  | { kind: 'fixed'; ms: number }
  | { kind: 'uniform'; minMs: number; maxMs: number }
  | { kind: 'lognormal'; p50Ms: number; p99Ms: number; maxMs?: number };

/** z-score of the 99th percentile of a standard normal distribution. */
const Z99 = 2.326_347_874;
/** Samples are capped so one unlucky draw cannot exceed any sane deadline. */
export const MAX_SAMPLE_MS = 60_000;

const nonNegative = z.coerce.number().finite().min(0).max(MAX_SAMPLE_MS);

export function parseLatencyProfile(text: string): LatencyProfile {
  const [kind, args = ''] = text.trim().split(':', 2);
  if (kind === 'fixed') return { kind, ms: nonNegative.parse(args) };
  if (kind === 'uniform') {
    const match = /^([\d.]+)-([\d.]+)$/.exec(args);
    if (!match) throw new Error(`uniform latency wants MIN-MAX in ms, got "${args}"`);
    const minMs = nonNegative.parse(match[1]);
    const maxMs = nonNegative.parse(match[2]);
    if (maxMs < minMs) throw new Error(`uniform latency: max ${maxMs} < min ${minMs}`);
    return { kind, minMs, maxMs };
  }
  if (kind === 'lognormal') {
    const fields = Object.fromEntries(args.split(',').map((pair) => pair.split('=', 2) as [string, string]));
    const p50Ms = nonNegative.refine((v) => v > 0, 'p50 must be > 0').parse(fields.p50);
    const p99Ms = nonNegative.parse(fields.p99);
    if (p99Ms < p50Ms) throw new Error(`lognormal latency: p99 ${p99Ms} < p50 ${p50Ms}`);
    if (fields.max === undefined) return { kind, p50Ms, p99Ms };
    const maxMs = nonNegative.parse(fields.max);
    if (maxMs < p99Ms) throw new Error(`lognormal latency: max ${maxMs} < p99 ${p99Ms}`);
    return { kind, p50Ms, p99Ms, maxMs };
  }
  throw new Error(
    `unknown latency profile "${text}" (fixed:MS, uniform:MIN-MAX, lognormal:p50=MS,p99=MS[,max=MS])`,
  );
}

export function formatLatencyProfile(profile: LatencyProfile): string {
  switch (profile.kind) {
    case 'fixed':
      return `fixed:${profile.ms}`;
    case 'uniform':
      return `uniform:${profile.minMs}-${profile.maxMs}`;
    case 'lognormal':
      return `lognormal:p50=${profile.p50Ms},p99=${profile.p99Ms}${profile.maxMs === undefined ? '' : `,max=${profile.maxMs}`}`;
  }
}

/** Standard normal sample (Box-Muller). */
function standardNormal(random: () => number): number {
  const u = 1 - random(); // (0, 1]: log(0) would be -Infinity
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}

export function createLatencySampler(
  profile: LatencyProfile,
  random: () => number = Math.random,
): () => number {
  switch (profile.kind) {
    case 'fixed':
      return () => profile.ms;
    case 'uniform':
      return () => profile.minMs + (profile.maxMs - profile.minMs) * random();
    case 'lognormal': {
      const mu = Math.log(profile.p50Ms);
      const sigma = Math.log(profile.p99Ms / profile.p50Ms) / Z99;
      const max = Math.min(MAX_SAMPLE_MS, profile.maxMs ?? MAX_SAMPLE_MS);
      return () => Math.min(max, Math.exp(mu + sigma * standardNormal(random)));
    }
  }
}
