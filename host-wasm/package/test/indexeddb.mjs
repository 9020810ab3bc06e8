// Opens test/idb.html in headless Chromium (see chromium.mjs): three replicas in Web
// Workers with their logs in IndexedDB lose no acknowledged write when the leader's
// worker, then every worker, is terminated and restarted from its database. Bounded:
// the page must finish within PAGE_MS; the browser profile (and so the databases) is
// removed afterwards.
import assert from 'node:assert/strict';
import { serve, browser, until } from './chromium.mjs';

const PAGE_MS = 60_000;
const root = new URL('..', import.meta.url).pathname;
const started = Date.now();
const server = await serve(root);
const b = await browser();
try {
  await b.open(`http://127.0.0.1:${server.address().port}/test/idb.html?run=${process.pid}`);
  const result = await until(b, 'return window.__result', PAGE_MS);
  console.log(result.log);
  console.log(`indexeddb in chromium: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  assert.ok(result.ok, 'the IndexedDB replica test failed');
} finally {
  await b.close();
  server.close();
}
