//! Runs the deterministic simulator over seeds.
//!
//! ```text
//! concord-sim --seeds 0..100000            sweep a range (each seed draws its own faults)
//! concord-sim --seed 42 --trace            replay one seed, printing its trace
//! concord-sim --seeds 0..500 --all-faults  every fault kind in every seed
//! concord-sim --seeds 0..200 --bug vote-without-log-check   (expects a violation)
//! ```
//!
//! Exits 0 when every seed passes, 1 on the first violation (after printing the seed and
//! the command that replays it), 2 on bad arguments.

use concord_tests::sim::{self, Faults, SimConfig};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

struct Args {
    seeds: std::ops::Range<u64>,
    trace: bool,
    all_faults: bool,
    bugs: Vec<String>,
    keep_going: bool,
    append_entries_max: Option<usize>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        seeds: 0..100,
        trace: false,
        all_faults: false,
        bugs: Vec::new(),
        keep_going: false,
        append_entries_max: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seed" | "--seeds" => args.seeds = concord_tests::seeds::parse(&a, it.next())?,
            "--trace" => args.trace = true,
            "--all-faults" => args.all_faults = true,
            "--keep-going" => args.keep_going = true,
            "--append-entries-max" => {
                let n = it.next().ok_or("--append-entries-max needs a number")?;
                args.append_entries_max = Some(n.parse().map_err(|e| format!("--append-entries-max: {e}"))?);
            }
            "--bug" => args.bugs.push(it.next().ok_or("--bug needs a name")?),
            "-h" | "--help" => {
                println!(
                    "usage: concord-sim [--seed N | --seeds LO..HI] [--all-faults] [--trace] [--keep-going] [--append-entries-max N] \
                     [--bug vote-without-log-check|commit-prior-term-by-count|unsafe-long-lease|read-index-without-quorum]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("concord-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let mut passed = 0u64;
    let mut failed = 0u64;
    let mut kinds: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut totals = sim::Report::default();
    for seed in args.seeds.clone() {
        let mut cfg = SimConfig::for_seed(seed);
        if args.all_faults {
            cfg.faults = Faults::all();
        }
        for bug in &args.bugs {
            if let Err(e) = cfg.enable_bug(bug) {
                eprintln!("concord-sim: {e}");
                return ExitCode::from(2);
            }
        }
        if let Some(n) = args.append_entries_max {
            cfg.append_entries_max = n;
        }
        cfg.trace = args.trace;
        for k in cfg.faults.kinds() {
            *kinds.entry(k).or_default() += 1;
        }
        match sim::run(cfg) {
            Ok(report) => {
                passed += 1;
                if args.trace {
                    for line in &report.trace {
                        println!("{line}");
                    }
                    println!("trace hash {:016x}", report.trace_hash);
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
            }
            Err(v) => {
                failed += 1;
                for line in &v.trace {
                    println!("{line}");
                }
                eprintln!("FAILED: {v}");
                if !args.keep_going {
                    break;
                }
            }
        }
    }
    println!(
        "seeds {:?}: {} passed, {} failed in {:.1}s",
        args.seeds,
        passed,
        failed,
        started.elapsed().as_secs_f64()
    );
    println!(
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
    println!("  seeds per fault kind: {kinds:?}");
    println!(
        "  committed indexes: {} (of which no node showed the checker the entry: {})",
        totals.committed, totals.unchecked_commits
    );
    let counters: Vec<String> = totals.metrics.named().iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("  protocol counters: {}", counters.join(" "));
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
