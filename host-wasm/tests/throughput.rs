//! The criterion bench's workload (`benches/benches/raft_throughput.rs`: a 3-node Raft
//! group in memory, one thread, no I/O), the same code natively and as WebAssembly (in
//! Node by `wasm-bindgen-test-runner`), to compare the core's cost in a JS engine with
//! native under the same conditions. Prints committed operations per second for batches
//! of 1, 16 and 256; checks only that every proposal is answered (timing is reported,
//! not asserted). `--release` for meaningful figures.

use concord_benches::MemoryCluster;

/// Operations per measured batch size.
const OPS: u64 = 50_000;

#[cfg(target_arch = "wasm32")]
fn now_ms() -> f64 {
    js_sys::Date::now()
}

#[cfg(not(target_arch = "wasm32"))]
fn now_ms() -> f64 {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64() * 1000.0
}

fn report(line: &str) {
    #[cfg(target_arch = "wasm32")]
    wasm_bindgen_test::console_log!("{line}");
    #[cfg(not(target_arch = "wasm32"))]
    println!("{line}");
}

fn measure() {
    let engine = if cfg!(target_arch = "wasm32") { "wasm" } else { "native" };
    for batch in [1u64, 16, 256] {
        let mut cluster = MemoryCluster::new(3);
        let start = now_ms();
        let mut done = 0;
        while done < OPS {
            let n = cluster.commit_batch(batch);
            assert_eq!(n, batch, "every proposal is answered");
            done += n;
        }
        let secs = (now_ms() - start) / 1000.0;
        report(&format!(
            "{engine} raft_3_nodes_in_memory commit_batch/{batch}: {:.0} ops/s",
            done as f64 / secs
        ));
    }
}

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen_test::wasm_bindgen_test]
fn committed_ops_per_second() {
    measure();
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn committed_ops_per_second() {
    measure();
}
