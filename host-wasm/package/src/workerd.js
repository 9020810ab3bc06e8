// Entry point for edge runtimes that refuse to compile WebAssembly at run time
// (workerd, Cloudflare Workers): the module is imported, so the runtime's configuration
// declares it (a `wasm` module named like this import) and compiles it at load time.
import wasmModule from '../dist/wasm/concord_wasm_bg.wasm';
import { initSync, Client as WasmClient } from '../dist/wasm/concord_wasm.js';
import { makeApi } from './concord.js';

initSync({ module: wasmModule });

export * from './concord.js';
export const Client = makeApi(WasmClient);
