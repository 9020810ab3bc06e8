//! Runs the primitives simulator over seeds.
//!
//! ```text
//! concord-psim --seeds 0..10000            sweep a range (each seed draws its own faults)
//! concord-psim --seed 42 --trace           replay one seed, printing the end of its trace
//! concord-psim --seeds 0..500 --all-faults every fault kind in every seed
//! concord-psim --seeds 0..50 --bug lock-ignores-holder   a broken rule (expects a violation)
//! ```
//!
//! Exits 0 when every seed passes, 1 on a violation (after printing the seed and the
//! command that replays it), 2 on bad arguments.

use concord_tests::psim::{self, PsimConfig};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

struct Args {
    seeds: std::ops::Range<u64>,
    trace: bool,
    all_faults: bool,
    keep_going: bool,
    bugs: Vec<String>,
}

fn parse() -> Result<Args, String> {
    let mut args =
        Args { seeds: 0..100, trace: false, all_faults: false, keep_going: false, bugs: Vec::new() };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seed" | "--seeds" => args.seeds = concord_tests::seeds::parse(&a, it.next())?,
            "--trace" => args.trace = true,
            "--all-faults" => args.all_faults = true,
            "--keep-going" => args.keep_going = true,
            "--bug" => args.bugs.push(it.next().ok_or("--bug needs a name")?),
            "-h" | "--help" => {
                println!(
                    "usage: concord-psim [--seed N | --seeds LO..HI] [--all-faults] [--trace] [--keep-going] \
                     [--bug {}]",
                    PsimConfig::BUGS.join("|")
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
            eprintln!("concord-psim: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let (mut passed, mut failed) = (0u64, 0u64);
    let mut totals: BTreeMap<&'static str, u64> = BTreeMap::new();
    let (mut unknown, mut lost, mut grants, mut trips, mut watched, mut signals, mut worst) =
        (0, 0, 0, 0, 0, 0, 0);
    for seed in args.seeds.clone() {
        let mut cfg = if args.all_faults { PsimConfig::all_faults(seed) } else { PsimConfig::for_seed(seed) };
        cfg.trace = args.trace;
        for bug in &args.bugs {
            if let Err(e) = cfg.enable_bug(bug) {
                eprintln!("concord-psim: {e}");
                return ExitCode::from(2);
            }
        }
        match psim::run(cfg) {
            Ok(r) => {
                passed += 1;
                for (k, v) in &r.ops {
                    *totals.entry(k).or_default() += v;
                }
                unknown += r.unknown;
                lost += r.sessions_lost;
                grants += r.lock_grants;
                trips += r.barrier_trips;
                watched += r.watch_events;
                signals += r.signals;
                worst = worst.max(r.recovery_us);
                if args.seeds.end - args.seeds.start == 1 {
                    println!("{r:#?}");
                }
            }
            Err(v) => {
                failed += 1;
                eprintln!("{v}");
                if !args.keep_going {
                    return ExitCode::from(1);
                }
            }
        }
    }
    let ops: u64 = totals.values().sum();
    println!(
        "{passed} passed, {failed} failed in {:.1}s; {ops} ops ({unknown} unknown), {lost} sessions lost, \
         {grants} lock grants, {trips} barrier trips, {watched} watch events, {signals} signals; \
         worst recovery {} ms",
        started.elapsed().as_secs_f64(),
        worst / 1000
    );
    println!("ops by kind: {totals:?}");
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
