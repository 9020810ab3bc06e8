#!/bin/sh
# The package's tests: builds the wasm (build.sh), starts `concord dev` on free ports,
# runs the Node tests (end to end; a replica over a medium that holds its flushes back),
# the shared conformance suite in Node, workerd and Chromium, three replicas in worker
# threads, three on IndexedDB in Chromium Web Workers, and the demo page, then stops the
# cluster (by its PID). CONCORD_BIN names the concord binary.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
root=$(cd "$here/../.." && pwd)
bin=${CONCORD_BIN:-$root/target/debug/concord}
node_flags=--experimental-websocket
node -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' 2>/dev/null && node_flags=
cd "$here"
test -d node_modules || npm ci --no-audit --no-fund
test -f dist/wasm/concord_wasm_bg.wasm || sh ../build.sh
# A free base port: the dev cluster takes base..base+2, +100.., +200.. (HTTP).
base=$(node -e '
const net = require("node:net");
const free = (p) => new Promise((r) => { const s = net.createServer(); s.once("error", () => r(false)); s.listen(p, "127.0.0.1", () => s.close(() => r(true))); });
(async () => { for (let b = 21000 + (process.pid % 40) * 300; b < 33000; b += 300) {
  let ok = true; for (const o of [0,1,2,100,101,102,200,201,202]) ok = ok && await free(b + o);
  if (ok) { console.log(b); return; } } process.exit(1); })();')
log=$(mktemp)
"$bin" dev --port "$base" >"$log" 2>&1 &
dev=$!
trap 'kill $dev 2>/dev/null; wait $dev 2>/dev/null; rm -f "$log"' EXIT
export CONCORD_WS="ws://127.0.0.1:$((base + 200))/ws,ws://127.0.0.1:$((base + 201))/ws,ws://127.0.0.1:$((base + 202))/ws"
for _ in $(seq 1 100); do
  grep -q "Ctrl-C stops the cluster" "$log" && break
  kill -0 $dev 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
npx tsc -p tsconfig.json
timeout 300 node $node_flags --test --test-timeout=60000 test/build/*.test.js
timeout 300 node $node_flags test/conformance-node.mjs $(echo "$CONCORD_WS" | tr , ' ')
timeout 300 node test/workerd.mjs
timeout 120 node $node_flags test/latency-node.mjs
timeout 300 node $node_flags test/chromium.mjs
timeout 120 node test/indexeddb.mjs
timeout 120 node --test test/replicas.test.mjs
timeout 300 node $node_flags test/demo.mjs
