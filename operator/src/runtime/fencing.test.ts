import { describe, expect, test } from 'vitest';
import { fenced, fencedRecorder, NotLeaderError } from './fencing.ts';

describe('fenced', () => {
  test('passes writes through while the lease is held, refuses them (not sent) once it is not', async () => {
    const sent: string[] = [];
    const writer = {
      apply: async (name: string) => {
        sent.push(name);
        return name.length;
      },
    };
    let leading = true;
    const guarded = fenced(writer, () => leading);
    expect(await guarded.apply('web')).toBe(3);
    leading = false;
    await expect(guarded.apply('api')).rejects.toBeInstanceOf(NotLeaderError);
    await expect(guarded.apply('api')).rejects.toThrow('apply: not written');
    expect(sent).toEqual(['web']);
  });
});

describe('fencedRecorder', () => {
  test('records while the lease is held, drops what comes after', () => {
    const recorded: string[] = [];
    let leading = true;
    const events = fencedRecorder({ record: (reason: string) => recorded.push(reason) }, () => leading);
    events.record('ShutdownSettingsApplied');
    leading = false;
    events.record('RolloutFailed');
    expect(recorded).toEqual(['ShutdownSettingsApplied']);
  });
});
