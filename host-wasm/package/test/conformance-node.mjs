// The shared conformance suite, run by the wasm client in Node against the cluster whose
// WebSocket endpoints are given: `node --experimental-websocket conformance-node.mjs URL…`.
// Prints each scenario's verdict and the closing `N passed, N failed, N skipped` line;
// exits 1 if any failed.
import { readFileSync } from 'node:fs';
import { initSync, runConformance } from '../dist/wasm-conformance/concord_wasm.js';

initSync({ module: readFileSync(new URL('../dist/wasm-conformance/concord_wasm_bg.wasm', import.meta.url)) });
const endpoints = process.argv.slice(2);
const { results, summary } = await runConformance({ endpoints }, `node-${process.pid}`);
for (const r of results) if (r.verdict !== 'passed') console.error(`${r.name}: ${r.verdict}: ${r.detail}`);
process.stdout.write(summary);
process.exit(results.some((r) => r.verdict === 'failed') ? 1 : 0);
