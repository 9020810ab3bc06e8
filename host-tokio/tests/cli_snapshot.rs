//! `concord snapshot save` takes a snapshot on demand; `concord snapshot restore` seeds a
//! new cluster from it, with the data and the fences carried over.

mod common;

use common::{bin, run_bounded, stdout, Cluster};
use std::process::Command;
use std::time::Duration;

fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {} / {}",
        o.status.code(),
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(o)
}

/// `concord snapshot restore FILE --data-dir DIR --voters 1,2,3`.
fn restore(file: &std::path::Path, dir: &std::path::Path) -> std::process::Output {
    let (file, dir) = (file.display().to_string(), dir.display().to_string());
    run_bounded(
        Command::new(bin()).args(["snapshot", "restore", &file, "--data-dir", &dir, "--voters", "1,2,3"]),
        Duration::from_secs(30),
    )
}

fn fence(c: &Cluster) -> u64 {
    ok(&c.concord(&["lock", "L", "--", "sh", "-c", "echo $CONCORD_FENCE"])).parse().expect("a fence")
}

#[test]
fn a_saved_snapshot_seeds_a_new_cluster_with_the_data_and_rising_fences() {
    let old = Cluster::start(3);
    let before = fence(&old);
    for _ in 0..3 {
        ok(&old.concord(&["counter", "incr", "n"]));
    }
    ok(&old.concord(&["kv", "put", "cfg/mode", "blue"]));
    // Taken on demand: a few entries, far below the snapshot threshold.
    let backups = tempfile::tempdir().expect("temp dir");
    let file = backups.path().join("backup.snap");
    let http = old.node(1).http.to_string();
    let saved = ok(&run_bounded(
        Command::new(bin()).args(["snapshot", "save", &file.display().to_string(), "--from", &http]),
        Duration::from_secs(30),
    ));
    assert!(saved.starts_with("saved the snapshot at index"), "{saved}");
    drop(old);

    // Nonsense is refused without touching the data directory.
    let mut new = Cluster::prepare(3, None);
    let junk = new.dir.path().join("junk.snap");
    std::fs::write(&junk, b"not a snapshot").expect("write");
    let o = restore(&junk, new.data_dir(1));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a saved snapshot"), "{o:?}");

    for id in 1..=3 {
        let out = ok(&restore(&file, new.data_dir(id)));
        assert!(out.starts_with("restored the snapshot at index"), "{out}");
    }
    // Restoring over a node's state is refused.
    let o = restore(&file, new.data_dir(1));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds a node's state already"), "{o:?}");

    new.start_all();
    assert_eq!(ok(&new.concord(&["counter", "get", "n"])), "3");
    assert_eq!(ok(&new.concord(&["kv", "get", "cfg/mode"])), "blue");
    let after = fence(&new);
    assert!(after > before, "fences keep increasing across the restore: {before} then {after}");
    assert_eq!(stdout(&new.concord(&["member", "list"])), "voters [1, 2, 3], learners []");
}
