// Runs test/worker.js in workerd (from the `workerd` npm package) against the cluster in
// CONCORD_WS: the wasm modules are declared in the config (workerd compiles no wasm at
// run time), outbound network may reach 127.0.0.1. Checks the lock, the counter and the
// conformance suite; prints lock+unlock latency; stops workerd by its PID.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import assert from 'node:assert/strict';

const here = new URL('..', import.meta.url).pathname;
const endpoints = process.env.CONCORD_WS;
assert.ok(endpoints, 'CONCORD_WS names the cluster');
const port = await new Promise((resolve) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  });
});
const modules = [
  ['test/worker.js', 'esModule'],
  ['src/workerd.js', 'esModule'],
  ['src/concord.js', 'esModule'],
  ['dist/wasm/concord_wasm.js', 'esModule'],
  ['dist/wasm/concord_wasm_bg.wasm', 'wasm'],
  ['dist/wasm-conformance/concord_wasm.js', 'esModule'],
  ['dist/wasm-conformance/concord_wasm_bg.wasm', 'wasm'],
];
const config = `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    (name = "loopback", network = (allow = ["local"])),
  ],
  sockets = [(name = "http", address = "127.0.0.1:${port}", http = (), service = "main")],
);
const worker :Workerd.Worker = (
  modules = [
${modules.map(([m, kind]) => `    (name = "${m}", ${kind} = embed "../../${m}"),`).join('\n')}
  ],
  compatibilityDate = "2025-09-01",
  globalOutbound = "loopback",
);
`;
mkdirSync(`${here}test/build`, { recursive: true });
writeFileSync(`${here}test/build/workerd.capnp`, config);
const bin = `${here}node_modules/.bin/workerd`;
const child = spawn(bin, ['serve', `${here}test/build/workerd.capnp`], { stdio: ['ignore', 'inherit', 'inherit'] });
const stop = () => child.exitCode === null && child.kill('SIGKILL');
process.on('exit', stop);
const deadline = Date.now() + 30_000;

async function get(path) {
  for (;;) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(120_000) });
      const body = await r.text();
      assert.equal(r.status, 200, body);
      return JSON.parse(body);
    } catch (e) {
      if (e.cause?.code !== 'ECONNREFUSED' || Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

const q = `endpoints=${encodeURIComponent(endpoints)}&ns=workerd-${process.pid}`;
const lock = await get(`/lock?${q}&rounds=50`);
assert.ok(lock.fence > 0, `a fence: ${JSON.stringify(lock)}`);
assert.equal(lock.counter, 1);
const ms = lock.ms.sort((a, b) => a - b);
console.log(`workerd: lock fence ${lock.fence}, counter ${lock.counter}; lock+unlock over ${ms.length} rounds: p50 ${ms[ms.length >> 1].toFixed(2)} ms, p99 ${ms[Math.floor(ms.length * 0.99)].toFixed(2)} ms`);
const { results, summary } = await get(`/conformance?${q}-conformance`);
for (const r of results) if (r.verdict !== 'passed') console.error(`${r.name}: ${r.verdict}: ${r.detail}`);
process.stdout.write(summary.replace('conformance:', 'conformance in workerd:'));
stop();
process.exit(results.some((r) => r.verdict === 'failed') ? 1 : 0);
