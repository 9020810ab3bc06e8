// Entry point for browsers and Web Workers with the Replica (see replica-node.js) and
// its IndexedDB storage.
import init, { Client as WasmClient, Replica } from '../dist/wasm-replica/concord_wasm.js';
import { makeApi } from './concord.js';

await init({ module_or_path: new URL('../dist/wasm-replica/concord_wasm_bg.wasm', import.meta.url) });

export * from './concord.js';
export { Replica };
export { IndexedDbStorage, INDEXED_DB_DEFAULTS } from './indexeddb.js';
export const Client = makeApi(WasmClient);
