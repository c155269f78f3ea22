import { describe, expect, test } from 'vitest';
import { parsePrometheusDuration } from './duration.ts';

describe('parsePrometheusDuration', () => {
  test.each([
    ['30s', 30_000],
    ['15m', 900_000],
    ['1h30m', 5_400_000],
    ['7d', 604_800_000],
    ['1w', 604_800_000],
    ['1y', 31_536_000_000],
    ['500ms', 500],
    ['1m30s500ms', 90_500],
  ])('%s is %d ms', (text, ms) => {
    expect(parsePrometheusDuration(text)).toBe(ms);
  });

  test.each(['', '5', 'm', '1h 30m', '30m1h', '1m1m', '-5m', '1.5h'])('"%s" is refused', (text) => {
    expect(() => parsePrometheusDuration(text)).toThrow('Prometheus duration');
  });
});
