import { describe, expect, test } from 'vitest';
import { StatusPacer } from './status-pacer.ts';

describe('StatusPacer', () => {
  test('waits the debounce for small policies, factor x the last pass for large ones, up to the cap', () => {
    const pacer = new StatusPacer({ minMs: 1_000, maxMs: 30_000, factor: 20 });
    expect(pacer.delay('new')).toBe(1_000);
    pacer.measured('small', 3);
    expect(pacer.delay('small')).toBe(1_000);
    pacer.measured('large', 170);
    expect(pacer.delay('large')).toBe(3_400);
    pacer.measured('huge', 5_000);
    expect(pacer.delay('huge')).toBe(30_000);
    pacer.forget('large');
    expect(pacer.delay('large')).toBe(1_000);
  });

  test('a slow status write (a busy apiserver) spaces the next ones; a quick one leaves the debounce', () => {
    const pacer = new StatusPacer({ minMs: 1_000, maxMs: 30_000, factor: 20, writeFactor: 10 });
    pacer.wrote('calm', 20);
    expect(pacer.delay('calm')).toBe(1_000);
    pacer.measured('busy', 3);
    pacer.wrote('busy', 400);
    expect(pacer.delay('busy')).toBe(4_000);
    pacer.wrote('busy', 30);
    expect(pacer.delay('busy')).toBe(1_000);
    pacer.wrote('stuck', 10_000);
    expect(pacer.delay('stuck')).toBe(30_000);
    pacer.forget('stuck');
    expect(pacer.delay('stuck')).toBe(1_000);
  });
});
