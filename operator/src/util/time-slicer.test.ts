import { describe, expect, it } from 'vitest';
import { TimeSlicer } from './time-slicer.ts';

function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

describe('TimeSlicer', () => {
  it('gives the event loop a turn once a slice of work is used up, not before', async () => {
    const slicer = new TimeSlicer(5);
    let turns = 0;
    const count = () => setImmediate(() => turns++);
    count();
    await slicer.pause(); // fresh slice: no turn
    expect(turns).toBe(0);
    busy(6);
    await slicer.pause();
    expect(turns).toBe(1);
  });

  it('counts the work, not the turns given away', async () => {
    const slicer = new TimeSlicer(1);
    busy(3);
    setImmediate(() => busy(50)); // other work, done during the turn
    await slicer.pause();
    const worked = slicer.workedMs;
    expect(worked).toBeGreaterThanOrEqual(3);
    expect(worked).toBeLessThan(50);
  });
});
