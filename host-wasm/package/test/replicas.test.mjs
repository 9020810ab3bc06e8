// Three replicas of the package's Replica, each in its own worker thread, joined by
// postMessage through this thread (which can cut a node off): they elect a leader, elect
// another when the leader is partitioned, take the old one back as a follower when
// healed, and a replica rebuilt from its stored log keeps its term and log.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';

const members = [1, 2, 3];

function cluster() {
  const cut = new Set();
  const workers = new Map();
  const waiting = new Map();
  for (const id of members) {
    const w = new Worker(new URL('./replica-worker.mjs', import.meta.url), { workerData: { id, members } });
    w.on('message', (m) => {
      if (m.type === 'peer') {
        if (!cut.has(m.from) && !cut.has(m.to)) workers.get(m.to)?.postMessage(m);
      } else if (m.type === 'status') {
        waiting.get(id)?.(m.status);
        waiting.delete(id);
      }
    });
    w.on('error', (e) => {
      throw e;
    });
    workers.set(id, w);
  }
  const ask = (id, type = 'status') =>
    new Promise((resolve) => {
      waiting.set(id, resolve);
      workers.get(id).postMessage({ type });
    });
  const statuses = () => Promise.all(members.map((id) => ask(id)));
  const until = async (what, check, ms = 15_000) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const s = await statuses();
      const v = check(s);
      if (v) return v;
      if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms: ${JSON.stringify(s)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const stop = () => Promise.all([...workers.values()].map((w) => w.terminate()));
  return { cut, ask, until, stop };
}

test('three replicas in worker threads elect, fail over, heal and restart from storage', async () => {
  const c = cluster();
  try {
    const agreed = (s, among) => {
      const l = s.filter((x) => among.includes(x.id) && x.role === 'leader');
      return l.length === 1 && s.filter((x) => among.includes(x.id)).every((x) => x.leader === l[0].id) && l[0];
    };
    const first = await c.until('a leader', (s) => agreed(s, members));
    c.cut.add(first.id);
    const others = members.filter((m) => m !== first.id);
    const second = await c.until('a leader among the others', (s) => agreed(s, others));
    assert.notEqual(second.id, first.id);
    assert.ok(second.term > first.term, `term ${second.term} after the partition is above ${first.term}`);
    c.cut.clear();
    await c.until('the old leader follows', (s) => s.find((x) => x.id === first.id).leader === second.id);
    const before = (await c.ask(second.id)).lastIndex;
    const follower = others.find((m) => m !== second.id);
    const stored = await c.ask(follower);
    const restarted = await c.ask(follower, 'restart');
    assert.ok(restarted.term >= stored.term, 'the term survives a restart');
    assert.ok(restarted.lastIndex >= Math.min(stored.lastIndex, before), 'the log survives a restart');
    await c.until('the restarted replica catches up', (s) => s.find((x) => x.id === follower).appliedIndex >= before);
  } finally {
    await c.stop();
  }
});
