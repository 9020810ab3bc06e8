#!/bin/sh
# Builds the npm package's WebAssembly: the client (dist/wasm), the client with the
# Replica (dist/wasm-replica) and, for the conformance tests, the client with the shared
# conformance suite (dist/wasm-conformance). Needs the
# wasm32-unknown-unknown target, wasm-bindgen-cli at the version of the wasm-bindgen crate
# in Cargo.lock, and the package's npm dependencies (`npm ci` in package/: binaryen's
# wasm-opt — Debian's is too old for wasm-bindgen's reference-types tables —, typescript,
# workerd); scripts/test-all.sh installs them.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
pkg="$here/package"
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3 }' "$root/Cargo.lock")
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }')
if [ "$want" != "$have" ]; then
  echo "wasm-bindgen-cli $want is needed (found: ${have:-none}): cargo install wasm-bindgen-cli --version $want" >&2
  exit 1
fi
target="${CARGO_TARGET_DIR:-$root/target}/wasm32-unknown-unknown/wasm/concord_wasm.wasm"
build() { # features out-dir
  (cd "$root" && nice -n 10 cargo build -q -p concord-wasm --target wasm32-unknown-unknown --profile wasm $1)
  rm -rf "$2"
  wasm-bindgen --target web --out-dir "$2" "$target"
  "$pkg/node_modules/.bin/wasm-opt" -Oz --strip-debug --strip-producers --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-reference-types --enable-multivalue --enable-mutable-globals \
    -o "$2/concord_wasm_bg.wasm" "$2/concord_wasm_bg.wasm"
}
test -x "$pkg/node_modules/.bin/wasm-opt" || (cd "$pkg" && npm ci --no-audit --no-fund)
build "" "$pkg/dist/wasm"
build "--features replica" "$pkg/dist/wasm-replica"
build "--features conformance" "$pkg/dist/wasm-conformance"
for d in wasm wasm-replica wasm-conformance; do
  f="$pkg/dist/$d/concord_wasm_bg.wasm"
  echo "$d: $(wc -c < "$f") bytes raw, $(gzip -9 -c "$f" | wc -c) bytes gzipped"
done
