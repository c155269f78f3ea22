import { describe, expect, test } from 'vitest';
import { createLatencySampler, formatLatencyProfile, MAX_SAMPLE_MS, parseLatencyProfile } from './latency.ts';

/** Deterministic uniform [0, 1) source (mulberry32), so the statistics below are reproducible. */
function seeded(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const quantile = (values: number[], q: number): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(q * (sorted.length - 1))] ?? Number.NaN;
};

describe('latency profiles', () => {
  test('parse and format round-trip', () => {
    for (const text of [
      'fixed:25',
      'uniform:10-100',
      'lognormal:p50=20,p99=250',
      'lognormal:p50=20,p99=250,max=400',
    ]) {
      expect(formatLatencyProfile(parseLatencyProfile(text))).toBe(text);
    }
  });

  test('reject malformed or inconsistent profiles', () => {
    expect(() => parseLatencyProfile('fixed:-1')).toThrow();
    expect(() => parseLatencyProfile('uniform:100-10')).toThrow(/max/);
    expect(() => parseLatencyProfile('lognormal:p50=20,p99=10')).toThrow(/p99/);
    expect(() => parseLatencyProfile('lognormal:p50=20,p99=250,max=100')).toThrow(/max 100 < p99 250/);
    expect(() => parseLatencyProfile('lognormal:p99=10')).toThrow();
  });

  test('a log-normal sample has the requested median and 99th percentile', () => {
    const sample = createLatencySampler(parseLatencyProfile('lognormal:p50=20,p99=250'), seeded(42));
    const values = Array.from({ length: 50_000 }, sample);
    expect(quantile(values, 0.5)).toBeGreaterThan(19);
    expect(quantile(values, 0.5)).toBeLessThan(21);
    expect(quantile(values, 0.99)).toBeGreaterThan(225);
    expect(quantile(values, 0.99)).toBeLessThan(275);
    expect(Math.max(...values)).toBeLessThanOrEqual(MAX_SAMPLE_MS);
  });

  test('a capped log-normal keeps its p99 and never exceeds max; uncapped, the same draws do', () => {
    const capped = createLatencySampler(parseLatencyProfile('lognormal:p50=20,p99=1000,max=1500'), seeded(7));
    const values = Array.from({ length: 50_000 }, capped);
    expect(Math.max(...values)).toBe(1500);
    expect(quantile(values, 0.99)).toBeGreaterThan(900);
    expect(quantile(values, 0.99)).toBeLessThan(1100);
    // Negative control: without max, the same seed draws beyond it.
    const free = createLatencySampler(parseLatencyProfile('lognormal:p50=20,p99=1000'), seeded(7));
    expect(Math.max(...Array.from({ length: 50_000 }, free))).toBeGreaterThan(1500);
  });

  test('fixed and uniform stay in their bounds', () => {
    expect(createLatencySampler({ kind: 'fixed', ms: 7 })()).toBe(7);
    const uniform = createLatencySampler({ kind: 'uniform', minMs: 10, maxMs: 20 }, seeded(1));
    const values = Array.from({ length: 1000 }, uniform);
    expect(Math.min(...values)).toBeGreaterThanOrEqual(10);
    expect(Math.max(...values)).toBeLessThan(20);
  });
});
