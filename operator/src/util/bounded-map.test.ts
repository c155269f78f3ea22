import { expect, test } from 'vitest';
import { setBounded } from './bounded-map.ts';

test('keeps at most max entries, dropping the one set longest ago; setting a key again renews it', () => {
  const map = new Map<string, number>();
  setBounded(map, 'a', 1, 2);
  setBounded(map, 'b', 2, 2);
  setBounded(map, 'a', 3, 2); // renewed: b is now the oldest
  setBounded(map, 'c', 4, 2);
  expect([...map]).toEqual([
    ['a', 3],
    ['c', 4],
  ]);
});
