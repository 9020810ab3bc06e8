// Entry point for browsers, Web Workers and bundlers: the module is fetched from beside
// this file (bundlers rewrite the URL).
import init, { Client as WasmClient } from '../dist/wasm/concord_wasm.js';
import { makeApi } from './concord.js';

await init({ module_or_path: new URL('../dist/wasm/concord_wasm_bg.wasm', import.meta.url) });

export * from './concord.js';
export const Client = makeApi(WasmClient);
