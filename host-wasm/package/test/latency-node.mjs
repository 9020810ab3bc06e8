// Lock+unlock round trips from Node through the package's Client against the cluster in
// CONCORD_WS: prints p50 and p99 over ROUNDS (default 200) rounds.
import { Client } from '@concord/client';

const rounds = Number(process.env.ROUNDS ?? '200');
const client = await Client.connect({ endpoints: process.env.CONCORD_WS.split(',') });
const name = `latency-node-${process.pid}`;
await (await client.lock(name)).release(); // warm: the session is open
const ms = [];
for (let i = 0; i < rounds; i++) {
  const t0 = performance.now();
  const lock = await client.lock(name);
  await lock.release();
  ms.push(performance.now() - t0);
}
await client.close();
ms.sort((a, b) => a - b);
const at = (q) => ms[Math.min(ms.length - 1, Math.floor(ms.length * q))].toFixed(2);
console.log(`node: lock+unlock over ${rounds} rounds: p50 ${at(0.5)} ms, p99 ${at(0.99)} ms`);
