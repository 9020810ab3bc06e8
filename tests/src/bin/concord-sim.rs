//! Runs the Raft simulator over seeds.
//!
//! ```text
//! concord-sim --seeds 0..100000            sweep a range (each seed draws its own faults)
//! concord-sim --seed 42 --trace            replay one seed, printing its trace
//! concord-sim --seeds 0..500 --all-faults  every fault kind in every seed
//! concord-sim --seeds 0..200 --bug vote-without-log-check   (expects a violation)
//! ```
//!
//! The flags the simulators share and the exit status are described in
//! `concord_tests::sweep`; this one adds `--append-entries-max N`.

use concord_tests::say;
use concord_tests::sim::{self, Faults, SimConfig};
use concord_tests::sweep::{sweep, SweepArgs};
use std::collections::BTreeMap;
use std::process::ExitCode;

const USAGE: &str = "usage: concord-sim [--seed N | --seeds LO..HI] [--all-faults] [--trace] [--keep-going] \
[--append-entries-max N] [--bug vote-without-log-check|commit-prior-term-by-count|unsafe-long-lease|read-index-without-quorum]";

/// The configuration of one seed under `args`.
fn config(args: &SweepArgs, seed: u64) -> Result<SimConfig, String> {
    let mut cfg = SimConfig::for_seed(seed);
    if args.all_faults {
        cfg.faults = Faults::all();
    }
    for bug in &args.bugs {
        cfg.enable_bug(bug)?;
    }
    if let Some(n) = args.option("--append-entries-max")? {
        cfg.append_entries_max = n;
    }
    cfg.trace = args.trace;
    Ok(cfg)
}

fn main() -> ExitCode {
    let args = match SweepArgs::parse(std::env::args().skip(1), &["--append-entries-max"], USAGE)
        .and_then(|a| config(&a, 0).map(|_| a))
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("concord-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let mut kinds: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut totals = sim::Report::default();
    let run = |seed| {
        let cfg = config(&args, seed).expect("checked above");
        for k in cfg.faults.kinds() {
            *kinds.entry(k).or_default() += 1;
        }
        sim::run(cfg)
    };
    let swept = sweep(&args, run, |report| {
        if args.trace {
            for line in &report.trace {
                say!("{line}");
            }
            say!("trace hash {:016x}", report.trace_hash);
        }
        totals.steps += report.steps;
        totals.ops += report.ops;
        totals.ops_unknown += report.ops_unknown;
        totals.crashes += report.crashes;
        totals.partitions += report.partitions;
        totals.membership_changes += report.membership_changes;
        totals.transfers += report.transfers;
        totals.pauses += report.pauses;
        totals.snapshots_installed += report.snapshots_installed;
        totals.leaders_elected += report.leaders_elected;
        totals.recovery_us = totals.recovery_us.max(report.recovery_us);
        totals.metrics.add(&report.metrics);
        totals.unchecked_commits += report.unchecked_commits;
        totals.committed += report.committed;
    });
    say!("{}", swept.summary(&args.seeds));
    say!(
        "  steps={} ops={} (unknown outcome {}) leaders={} crashes={} link-faults={} membership-changes={} \
         transfers={} pauses={} snapshots-installed={} worst-recovery={}ms",
        totals.steps,
        totals.ops,
        totals.ops_unknown,
        totals.leaders_elected,
        totals.crashes,
        totals.partitions,
        totals.membership_changes,
        totals.transfers,
        totals.pauses,
        totals.snapshots_installed,
        totals.recovery_us / 1000
    );
    say!("  seeds per fault kind: {kinds:?}");
    say!(
        "  committed indexes: {} (of which no node showed the checker the entry: {})",
        totals.committed,
        totals.unchecked_commits
    );
    let counters: Vec<String> = totals.metrics.named().iter().map(|(k, v)| format!("{k}={v}")).collect();
    say!("  protocol counters: {}", counters.join(" "));
    swept.exit_code()
}
