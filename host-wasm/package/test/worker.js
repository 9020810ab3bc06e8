// A Cloudflare-style worker (run in workerd by workerd.mjs): the package's Client over
// WebSocket from inside the edge runtime. `/lock` takes a lock, increments a counter
// and returns the fence, plus lock+unlock round-trip times; `/conformance` runs the
// shared conformance suite from the conformance build.
import { Client } from '../src/workerd.js';
import conformanceWasm from '../dist/wasm-conformance/concord_wasm_bg.wasm';
import { initSync, runConformance } from '../dist/wasm-conformance/concord_wasm.js';

initSync({ module: conformanceWasm });

export default {
  async fetch(request) {
    const url = new URL(request.url);
    const endpoints = (url.searchParams.get('endpoints') ?? '').split(',');
    const ns = url.searchParams.get('ns') ?? 'workerd';
    if (url.pathname === '/lock') {
      const client = await Client.connect({ endpoints });
      let fence;
      {
        await using lock = await client.lock(`${ns}/lock`);
        fence = lock.fence;
      }
      const counter = await client.counter(`${ns}/counter`).incr();
      const rounds = Number(url.searchParams.get('rounds') ?? '0');
      const ms = [];
      for (let i = 0; i < rounds; i++) {
        const t0 = performance.now();
        const l = await client.lock(`${ns}/latency`);
        await l.release();
        ms.push(performance.now() - t0);
      }
      await client.close();
      return Response.json({ fence, counter, ms });
    }
    if (url.pathname === '/conformance') {
      const { results, summary } = await runConformance({ endpoints }, ns);
      return Response.json({ results, summary });
    }
    return new Response('not found', { status: 404 });
  },
};
