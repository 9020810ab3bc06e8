// Entry point for Node (≥ 22, or 20 with --experimental-websocket: the client uses the
// global WebSocket): the module is compiled from the file beside this package.
import { readFileSync } from 'node:fs';
import { initSync, Client as WasmClient } from '../dist/wasm/concord_wasm.js';
import { makeApi } from './concord.js';

initSync({ module: readFileSync(new URL('../dist/wasm/concord_wasm_bg.wasm', import.meta.url)) });

export * from './concord.js';
export const Client = makeApi(WasmClient);
