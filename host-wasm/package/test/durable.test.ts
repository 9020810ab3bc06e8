// A replica over a medium whose writes become durable later (as IndexedDbStorage's do)
// sends nothing that depends on a write before the medium reports it durable: no vote
// leaves, so no leader is elected, and no entry commits, until the medium says so. On a
// virtual clock, in this thread. Also: IndexedDbStorage outside a browser is a typed error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, Replica, MemoryStorage, IndexedDbStorage, StorageError, type DeferredStorage } from '@concord/client/replica';

/** Memory whose flushes the test commits by hand: `sync()` names the flush, `durable()`
 * the last one committed, as the deferred-medium contract says. */
class HeldBack extends MemoryStorage implements DeferredStorage {
  flushes = 0;
  committed = 0;
  failure: StorageError | null = null;
  /** Every flush commits at once. */
  auto = false;
  override sync(): number {
    return ++this.flushes;
  }
  durable(): number {
    if (this.failure) throw this.failure;
    if (this.auto) this.commit();
    return this.committed;
  }
  commit() {
    this.committed = this.flushes;
  }
}

const members = [1, 2, 3];

/** Nodes 1 (in memory) and 2 (over `held`); node 3 is down. Messages move at once. */
function pair(held: HeldBack) {
  let now = 0;
  const nodes = new Map<number, Replica>([
    [1, new Replica({ id: 1, members, now, seed: 1 })],
    [2, new Replica({ id: 2, members, storage: held, now, seed: 2 })],
  ]);
  const sent: Record<number, number> = { 1: 0, 2: 0 };
  const settle = () => {
    for (let round = 0; round < 1_000; round++) {
      let moved = 0;
      for (const [id, r] of nodes) {
        for (const p of r.drain().peers) {
          sent[id]++;
          const to = nodes.get(p.to);
          if (to) {
            to.handlePeer(now, id, p.bytes);
            moved++;
          }
        }
      }
      if (moved === 0) return;
    }
    throw new Error('messages kept moving');
  };
  /** Runs the clock `ms` forward, deadline by deadline. */
  const run = (ms: number) => {
    const end = now + ms;
    while (now < end) {
      const next = Math.min(...[...nodes.values()].map((r) => now + Math.max(r.timeoutMs(now), 1)));
      now = Math.min(next, end);
      for (const r of nodes.values()) r.tick(now);
      settle();
    }
  };
  const leader = () => [...nodes.values()].map((r) => r.status()).find((s) => s.role === 'leader');
  return { nodes, sent, settle, run, leader };
}

test('no vote leaves and no leader is elected before the voter’s writes are durable', () => {
  const held = new HeldBack();
  const c = pair(held);
  c.run(5_000);
  assert.equal(c.sent[2], 0, 'nothing leaves node 2 before its first writes are durable');
  assert.equal(c.leader(), undefined, 'no leader');
  // Its first writes durable, node 2 answers pre-votes and sees a campaign, but the vote
  // it writes in the new term is not durable: neither node is elected.
  held.commit();
  const durable = held.committed;
  c.run(5_000);
  assert.ok(c.sent[2] > 0, 'node 2 answers what needs no new write');
  assert.ok(c.nodes.get(2)!.status().term > 0, 'node 2 saw a campaign');
  assert.ok(held.flushes > durable, 'node 2 wrote the new term and vote');
  assert.equal(c.leader(), undefined, 'no leader while that vote is not durable');
  held.auto = true;
  c.run(5_000);
  assert.ok(c.leader(), 'a leader once node 2’s writes are durable');
  for (const r of c.nodes.values()) r.free();
});

test('a write is not acknowledged before the follower’s copy is durable', async () => {
  // On the real clock, with a Client against both nodes: the session opens while the
  // medium commits as it goes; then it holds its flushes back.
  const held = new HeldBack();
  let auto = true;
  let now = performance.now();
  const c = pair(held);
  const client = Client.open({
    endpoints: ['node:1', 'node:2'],
    transport: (address: string, bytes: Uint8Array) => {
      const id = Number(address.split(':')[1]);
      c.nodes.get(id)!.handleClient(performance.now(), 1, bytes);
    },
    sessionTtlMs: 10_000,
  });
  const step = () => {
    now = performance.now();
    if (auto) held.commit();
    for (const [id, r] of c.nodes) {
      r.tick(now);
      const out = r.drain();
      for (const p of out.peers) c.nodes.get(p.to)?.handlePeer(now, id, p.bytes);
      for (const m of out.clients) client.receive(`node:${id}`, m.bytes);
    }
  };
  const timer = setInterval(step, 2);
  try {
    assert.equal(await client.counter('n').incr(), 1);
    auto = false;
    const leader = c.leader();
    assert.ok(leader, 'a leader');
    const before = leader.commitIndex;
    let settled = false;
    const incr = client.counter('n').incr().finally(() => {
      settled = true;
    });
    await new Promise((r) => setTimeout(r, 1_000));
    assert.ok(held.flushes > held.committed, 'node 2 holds the entry, not yet durable');
    assert.equal(settled, false, 'the increment is not acknowledged');
    assert.equal(c.nodes.get(leader.id)!.status().commitIndex, before, 'nor committed');
    auto = true;
    assert.equal(await incr, 2, 'acknowledged once node 2’s copy is durable');
    await client.close();
  } finally {
    clearInterval(timer);
    for (const r of c.nodes.values()) r.free();
  }
});

test('a medium that fails stops the replica with a STORAGE_FAILED error', () => {
  const held = new HeldBack();
  const c = pair(held);
  c.run(3_000);
  held.failure = new StorageError('the disk is gone', 'STORAGE_QUOTA');
  assert.throws(
    () => {
      c.run(3_000);
    },
    (e: { code?: string; message?: string }) => e.code === 'STORAGE_FAILED' && /STORAGE_QUOTA/.test(e.message ?? ''),
  );
  assert.throws(() => c.nodes.get(2)!.tick(1e9), (e: { code?: string }) => e.code === 'STORAGE_FAILED', 'and stays stopped');
});

test('IndexedDbStorage outside a browser rejects with STORAGE_UNAVAILABLE; bad options are typed', async () => {
  await assert.rejects(IndexedDbStorage.open('x'), (e) => e instanceof StorageError && e.code === 'STORAGE_UNAVAILABLE');
  await assert.rejects(IndexedDbStorage.open(''), (e) => e instanceof StorageError && e.code === 'STORAGE_INVALID_ARGUMENT');
  await assert.rejects(
    IndexedDbStorage.open('x', { chunkBytes: -1 }),
    (e) => e instanceof StorageError && e.code === 'STORAGE_INVALID_ARGUMENT',
  );
});
