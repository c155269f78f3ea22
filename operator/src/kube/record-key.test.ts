import { describe, expect, test } from 'vitest';
import { loadRecordSeal, RECORD_KEY_FIELD } from './record-key.ts';
import { MemorySecretStore } from './testing.ts';

const signal = new AbortController().signal;

describe('loadRecordSeal', () => {
  test('no Secret yet: one is created with 32 random bytes, and a second replica reads the same key', async () => {
    const store = new MemorySecretStore('Secret gso/record-key');
    const first = await loadRecordSeal(store, signal);
    expect(store.writes).toBe(1);
    expect(Buffer.from(store.secret?.data[RECORD_KEY_FIELD] ?? '', 'base64')).toHaveLength(32);
    const second = await loadRecordSeal(store, signal);
    expect(store.writes).toBe(1);
    expect(second.sign('uid', '{}')).toBe(first.sign('uid', '{}'));
  });

  test("losing the race to create it: the winner's key is read", async () => {
    const store = new MemorySecretStore();
    const winner = new MemorySecretStore();
    await loadRecordSeal(winner, signal);
    let reads = 0;
    const racing = {
      description: store.description,
      read: async () => (reads++ === 0 ? undefined : winner.read()),
      create: (data: Record<string, string>) => winner.create(data),
      replace: () => Promise.reject(new Error('never replaced')),
    };
    const seal = await loadRecordSeal(racing, signal);
    expect(seal.sign('uid', '{}')).toBe((await loadRecordSeal(winner, signal)).sign('uid', '{}'));
  });

  test('a Secret without the key, or with a short one: an error naming the Secret and the field', async () => {
    const store = new MemorySecretStore('Secret gso/record-key');
    store.secret = { data: {}, resourceVersion: '1' };
    await expect(loadRecordSeal(store, signal)).rejects.toThrow('Secret gso/record-key has no data.key');
    store.secret = { data: { key: Buffer.alloc(8).toString('base64') }, resourceVersion: '2' };
    await expect(loadRecordSeal(store, signal)).rejects.toThrow(/data.key holds 8 bytes, at least 32/);
  });
});
