// End to end in Node: the package's Client against a real `concord dev` cluster (started
// by run.sh, its WebSocket endpoints in CONCORD_WS), plus a fake server that sends
// malformed and oversize frames. Every wait is bounded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { createHash } from 'node:crypto';
import {
  Client,
  ConflictError,
  ConnectionError,
  InvalidArgumentError,
  SessionLostError,
  WaitTimeoutError,
  type SessionLostEvent,
} from '@concord/client';

const endpoints = (process.env.CONCORD_WS ?? '').split(',').filter(Boolean);
const ns = `node-test-${process.pid}`;

function connect(sessionTtlMs = 10_000): Promise<Client> {
  return Client.connect({ endpoints, sessionTtlMs, connectTimeoutMs: 10_000 });
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<T>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  // The timer goes when the race is decided: a pending one would keep the process alive.
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

test('await using takes and releases a lock with its fence', async () => {
  const c = await connect();
  const name = `${ns}/lock`;
  let fence = 0;
  {
    await using lock = await c.lock(name);
    fence = lock.fence;
    assert.ok(fence > 0);
    assert.equal(await c.isLocked(name), true);
    await using second = await c.lock(name);
    assert.equal(second.fence, fence, 'reentrant: the same fence');
    assert.equal(await c.lockCount(name), 2);
  }
  assert.equal(await c.isLocked(name), false, 'released when the block ended');
  const other = await connect();
  {
    await using again = await other.lock(name, { timeoutMs: 5_000 });
    assert.ok(again.fence > fence, `fences rise: ${again.fence} > ${fence}`);
    await assert.rejects(c.lock(name, { timeoutMs: 0 }), WaitTimeoutError);
  }
  await other.close();
  await c.close();
});

test('one endpoint is enough: the other nodes are learnt, whichever node it is', async () => {
  // Each node alone; at least two of them do not lead, so commands need the leader's
  // WebSocket URL, learnt from the one given.
  for (const [i, url] of endpoints.entries()) {
    const c = await Client.connect({ endpoints: [url], sessionTtlMs: 10_000, connectTimeoutMs: 10_000 });
    const counter = c.counter(`${ns}/one-endpoint`);
    assert.equal(await within(counter.incr(), 15_000, `an increment through node ${i + 1} only`), i + 1);
    await c.close();
  }
});

test('a process that awaited ready() exits when its client closes (no timer left behind)', async () => {
  const { spawn } = await import('node:child_process');
  const script = `import { Client } from '@concord/client';
    const c = await Client.connect({ endpoints: ${JSON.stringify(endpoints)} });
    await c.ready(120000);
    await c.close();`;
  const started = Date.now();
  const child = spawn(process.execPath, [...process.execArgv.filter((a) => a.startsWith('--experimental')),
    '--input-type=module', '-e', script], { stdio: 'inherit' });
  const code = await within(new Promise<number | null>((resolve) => child.on('exit', resolve)), 60_000,
    'the child process ending').finally(() => child.kill('SIGKILL'));
  assert.equal(code, 0);
  assert.ok(Date.now() - started < 5_000, `it ended after ${Date.now() - started} ms, not when the client closed`);
});

test('counter increments, conditional KV writes with etags', async () => {
  const c = await connect();
  const counter = c.counter(`${ns}/visits`);
  assert.equal(await counter.incr(), 1);
  assert.equal(await counter.add(4), 5);
  assert.equal(await counter.compareAndSet(4, 9), false);
  assert.equal(await counter.compareAndSet(5, 9), true);
  assert.equal(await counter.get(), 9);

  const key = `${ns}/config`;
  const t1 = await c.kv.create(key, 'one');
  await assert.rejects(c.kv.create(key, 'again'), (e: unknown) => e instanceof ConflictError && e.code === 'KV_EXISTS');
  await assert.rejects(
    c.kv.replace(key, 'x', t1 + 1000),
    (e: unknown) => e instanceof ConflictError && e.code === 'KV_ETAG_MISMATCH',
  );
  const t2 = await c.kv.replace(key, 'two', t1);
  assert.ok(t2 > t1);
  const entry = await c.kv.get(key);
  assert.equal(new TextDecoder().decode(entry!.value!), 'two');
  assert.equal(entry!.etag, t2);
  assert.deepEqual(await c.kv.getIfNoneMatch(key, t2), { notModified: true });
  assert.equal(await c.kv.delete(key, { ifMatch: t2 }), true);
  await c.close();
});

test('watch events arrive in order', async () => {
  const c = await connect();
  const prefix = `${ns}/watched/`;
  const start = await c.kv.put(`${prefix}k0`, 'v0');
  const watch = c.watch({ prefix }, { from: start + 1 });
  await c.kv.put(`${prefix}k1`, 'v1');
  await c.kv.delete(`${prefix}k0`);
  const seen = [];
  for await (const e of watch) {
    seen.push(`${e.kind} ${e.key.slice(prefix.length)}`);
    if (seen.length === 2) break;
  }
  assert.deepEqual(seen, ['put k1', 'delete k0']);
  await c.close();
});

test('a queue group shares signals between its members', async () => {
  const [a, b, pub] = [await connect(), await connect(), await connect()];
  const subject = `${ns}.jobs`;
  const sa = await a.subscribe(subject, { queueGroup: 'workers' });
  const sb = await b.subscribe(subject, { queueGroup: 'workers' });
  assert.equal(await pub.publish(subject, 'first'), 1);
  assert.equal(await pub.publish(subject, 'second'), 1);
  const got = [await sa.nextWithin(5_000), await sb.nextWithin(5_000)];
  const payloads = got.map((s) => new TextDecoder().decode(s!.payload)).sort();
  assert.deepEqual(payloads, ['first', 'second'], 'each member got one');
  await sa.unsubscribe();
  await sb.unsubscribe();
  for (const c of [a, b, pub]) await c.close();
});

test('session loss is reported when the cluster expires the session', async () => {
  const c = await connect(1_000);
  const other = await connect();
  const name = `${ns}/expiring`;
  const lock = await c.lock(name);
  const lost = new Promise<number>((resolve) =>
    c.addEventListener('sessionlost', (e: SessionLostEvent) => resolve(e.session)),
  );
  // The client's event loop stalls past its TTL: no keep-alive leaves, and the cluster
  // expires the session and releases the lock.
  const until = Date.now() + 2_500;
  while (Date.now() < until) {
    /* stalled */
  }
  assert.equal(await within(lost, 5_000, 'sessionlost'), lock.session);
  assert.equal(lock.held, false);
  await assert.rejects(lock.release(), SessionLostError);
  const next = await other.lock(name, { timeoutMs: 5_000 });
  assert.ok(next.fence > lock.fence, 'the cluster gave the lock to the next holder');
  assert.equal(c.session.lost, 1);
  await next.release();
  await other.close();
  await c.close();
});

test('wrong-typed arguments are typed errors, not panics', async () => {
  const c = await connect();
  const bad = c as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  await assert.rejects(bad.lock(42), (e: unknown) => e instanceof InvalidArgumentError && e.code === 'INVALID_ARGUMENT');
  await assert.rejects(c.counter(`${ns}/x`).add(1.5), InvalidArgumentError);
  await assert.rejects(c.kv.put(`${ns}/y`, 7 as unknown as string), InvalidArgumentError);
  assert.throws(() => c.watch({} as unknown as { key: string }), InvalidArgumentError);
  await assert.rejects(Client.connect({ endpoints: ['http://127.0.0.1:1/'] }), InvalidArgumentError);
  await assert.rejects(Client.connect(undefined as unknown as { endpoints: string[] }), InvalidArgumentError);
  // The client still works afterwards.
  assert.equal(await c.counter(`${ns}/after`).incr(), 1);
  await c.close();
});

/** A WebSocket server on 127.0.0.1 that answers every binary message with `reply`. */
async function fakeServer(reply: Buffer): Promise<{ url: string; close: () => void }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.once('data', (head) => {
      const key = /Sec-WebSocket-Key: (.*)\r\n/i.exec(head.toString())?.[1] ?? '';
      const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      s.on('data', () => {
        const len = reply.length;
        const header = len < 126 ? Buffer.from([0x82, len]) : Buffer.from([0x82, 126, len >> 8, len & 0xff]);
        s.write(Buffer.concat([header, reply]));
      });
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return {
    url: `ws://127.0.0.1:${port}/ws`,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

test('malformed and oversize frames from a server are refused, never a hang', async () => {
  const garbage = Buffer.from([5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff]);
  const oversize = Buffer.from([0xff, 0xff, 0xff, 0x7f]);
  for (const [what, reply] of [['malformed', garbage], ['oversize', oversize]] as const) {
    const fake = await fakeServer(reply);
    const started = Date.now();
    await assert.rejects(
      within(Client.connect({ endpoints: [fake.url], connectTimeoutMs: 1_500 }), 5_000, what),
      (e: unknown) => e instanceof ConnectionError && e.code === 'UNREACHABLE',
      `${what} frames must leave the endpoint unusable`,
    );
    assert.ok(Date.now() - started < 4_000);
    fake.close();
  }
});
