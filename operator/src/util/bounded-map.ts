/**
 * Sets `key` in a Map kept to at most `max` entries: the entry set longest ago goes first (a
 * Map iterates in insertion order, and a key set again counts as new). For memos and per-object
 * memories that must not grow with the cluster.
 */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  if (map.size >= max) {
    const oldest = map.keys().next();
    if (!oldest.done) map.delete(oldest.value);
  }
  map.set(key, value);
}
