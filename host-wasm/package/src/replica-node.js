// Entry point for Node with the Replica: the client build plus a full Concord member
// driven from JS (`new Replica({ id, members, storage: new MemoryStorage(), now })`).
import { readFileSync } from 'node:fs';
import { initSync, Client as WasmClient, Replica } from '../dist/wasm-replica/concord_wasm.js';
import { makeApi } from './concord.js';

initSync({ module: readFileSync(new URL('../dist/wasm-replica/concord_wasm_bg.wasm', import.meta.url)) });

export * from './concord.js';
export { Replica };
export { IndexedDbStorage, INDEXED_DB_DEFAULTS } from './indexeddb.js';
export const Client = makeApi(WasmClient);
