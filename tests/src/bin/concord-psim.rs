//! Runs the primitives simulator over seeds.
//!
//! ```text
//! concord-psim --seeds 0..10000            sweep a range (each seed draws its own faults)
//! concord-psim --seed 42 --trace           replay one seed, printing its trace
//! concord-psim --seeds 0..500 --all-faults every fault kind in every seed
//! concord-psim --seeds 0..50 --bug lock-ignores-holder   a broken rule (expects a violation)
//! ```
//!
//! The flags and the exit status are the ones both simulators share, described in
//! `concord_tests::sweep`.

use concord_tests::psim::{self, PsimConfig};
use concord_tests::say;
use concord_tests::sweep::{sweep, SweepArgs};
use std::collections::BTreeMap;
use std::process::ExitCode;

/// The configuration of one seed under `args`.
fn config(args: &SweepArgs, seed: u64) -> Result<PsimConfig, String> {
    let mut cfg = if args.all_faults { PsimConfig::all_faults(seed) } else { PsimConfig::for_seed(seed) };
    cfg.trace = args.trace;
    for bug in &args.bugs {
        cfg.enable_bug(bug)?;
    }
    Ok(cfg)
}

fn main() -> ExitCode {
    let usage = format!(
        "usage: concord-psim [--seed N | --seeds LO..HI] [--all-faults] [--trace] [--keep-going] [--bug {}]",
        PsimConfig::BUGS.join("|")
    );
    let args = match SweepArgs::parse(std::env::args().skip(1), &[], &usage)
        .and_then(|a| config(&a, 0).map(|_| a))
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("concord-psim: {e}");
            return ExitCode::from(2);
        }
    };
    let mut totals: BTreeMap<&'static str, u64> = BTreeMap::new();
    let (mut unknown, mut lost, mut grants, mut trips, mut watched, mut signals, mut worst) =
        (0, 0, 0, 0, 0, 0, 0);
    let one_seed = args.seeds.end - args.seeds.start == 1;
    let run = |seed| psim::run(config(&args, seed).expect("checked above"));
    let swept = sweep(&args, run, |mut r| {
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
        // (Empty unless --trace.)
        for line in std::mem::take(&mut r.trace) {
            say!("{line}");
        }
        if one_seed {
            say!("{r:#?}");
        }
    });
    let ops: u64 = totals.values().sum();
    say!("{}", swept.summary(&args.seeds));
    say!(
        "  {ops} ops ({unknown} unknown), {lost} sessions lost, {grants} lock grants, {trips} barrier trips, \
         {watched} watch events, {signals} signals; worst recovery {} ms",
        worst / 1000
    );
    say!("  ops by kind: {totals:?}");
    swept.exit_code()
}
