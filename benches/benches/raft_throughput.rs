//! Committed operations per second of a 3-node in-memory Raft group driven by one
//! thread, with no I/O: the core's own cost per operation, with and without batching.

use concord_benches::MemoryCluster;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn committed_ops(c: &mut Criterion) {
    let mut group = c.benchmark_group("raft_3_nodes_in_memory");
    for batch in [1u64, 16, 256] {
        group.throughput(Throughput::Elements(batch));
        group.bench_with_input(BenchmarkId::new("commit_batch", batch), &batch, |b, &batch| {
            let mut cluster = MemoryCluster::new(3);
            b.iter(|| {
                let done = cluster.commit_batch(batch);
                assert_eq!(done, batch, "every proposal is answered");
            });
        });
    }
    group.finish();
}

criterion_group!(benches, committed_ops);
criterion_main!(benches);
