//! The command line both simulator binaries share (`concord-sim`, `concord-psim`): which
//! seeds to run, with which faults and deliberately broken rules, and a sweep loop that
//! counts, times and reports them.
//!
//! ```text
//! --seed N | --seeds LO..HI   one seed, or a range (default 0..100)
//! --all-faults                every fault kind in every seed
//! --bug NAME                  break a rule on purpose (repeatable; expects a violation)
//! --trace                     keep the trace and print it (every seed's, and a violation's)
//! --keep-going                run every seed even after a violation
//! ```
//!
//! Exit status: 0 when every seed passes, 1 on a violation (after printing its seed, its
//! trace tail and the command that replays it), 2 on bad arguments.

use crate::world::Violation;
use std::collections::BTreeMap;
use std::ops::Range;
use std::process::ExitCode;
use std::time::Instant;

/// Prints a line on standard output; when the reader went away (`| head`), the program
/// ends quietly instead of panicking.
pub fn say_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if writeln!(std::io::stdout().lock(), "{line}").is_err() {
        std::process::exit(0);
    }
}

/// `println!` for the simulator binaries, through [`say_line`].
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::sweep::say_line(format_args!($($arg)*))
    };
}

/// The seeds named by `--seed N` (`flag == "--seed"`) or `--seeds LO..HI`, with `value`
/// the argument that followed the flag.
pub fn parse_seeds(flag: &str, value: Option<String>) -> Result<Range<u64>, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    let number = |s: &str| s.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
    if flag == "--seed" {
        let s = number(&value)?;
        return Ok(s..s + 1);
    }
    let (lo, hi) = value.split_once("..").ok_or_else(|| format!("{flag} takes LO..HI"))?;
    Ok(number(lo)?..number(hi)?)
}

/// A parsed command line.
#[derive(Clone, Debug)]
pub struct SweepArgs {
    /// The seeds to run.
    pub seeds: Range<u64>,
    /// Keep (and print) the trace.
    pub trace: bool,
    /// Every fault kind in every seed.
    pub all_faults: bool,
    /// Rules to break.
    pub bugs: Vec<String>,
    /// Run on after a violation.
    pub keep_going: bool,
    /// Simulator-specific options that take a value (`--name value`), by name.
    pub options: BTreeMap<String, String>,
}

impl SweepArgs {
    /// Parses `args` (without the program name). `options` names the simulator's own
    /// flags that take a value; `usage` is printed for `--help`.
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        options: &[&str],
        usage: &str,
    ) -> Result<Self, String> {
        let mut out = Self {
            seeds: 0..100,
            trace: false,
            all_faults: false,
            bugs: Vec::new(),
            keep_going: false,
            options: BTreeMap::new(),
        };
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--seed" | "--seeds" => out.seeds = parse_seeds(&a, it.next())?,
                "--trace" => out.trace = true,
                "--all-faults" => out.all_faults = true,
                "--keep-going" => out.keep_going = true,
                "--bug" => out.bugs.push(it.next().ok_or("--bug needs a name")?),
                "-h" | "--help" => {
                    crate::say!("{usage}");
                    std::process::exit(0);
                }
                flag if options.contains(&flag) => {
                    let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
                    out.options.insert(flag.to_string(), value);
                }
                other => return Err(format!("unknown argument {other}")),
            }
        }
        Ok(out)
    }

    /// The value of option `name`, parsed.
    pub fn option<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, String>
    where
        T::Err: std::fmt::Display,
    {
        self.options.get(name).map(|v| v.parse().map_err(|e| format!("{name}: {e}"))).transpose()
    }
}

/// What a sweep did.
#[derive(Clone, Copy, Debug)]
pub struct Swept {
    /// Seeds that passed.
    pub passed: u64,
    /// Seeds that failed.
    pub failed: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

impl Swept {
    /// The one-line summary both simulators print first.
    pub fn summary(&self, seeds: &Range<u64>) -> String {
        format!("seeds {seeds:?}: {} passed, {} failed in {:.1}s", self.passed, self.failed, self.seconds)
    }

    /// The process's exit status.
    pub fn exit_code(&self) -> ExitCode {
        if self.failed > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// Runs `run` on every seed of `args`, handing each passing report to `passed` and
/// printing each violation; stops at the first one unless `--keep-going`.
pub fn sweep<R>(
    args: &SweepArgs,
    mut run: impl FnMut(u64) -> Result<R, Violation>,
    mut passed: impl FnMut(R),
) -> Swept {
    let started = Instant::now();
    let mut out = Swept { passed: 0, failed: 0, seconds: 0.0 };
    for seed in args.seeds.clone() {
        match run(seed) {
            Ok(report) => {
                out.passed += 1;
                passed(report);
            }
            Err(v) => {
                out.failed += 1;
                if args.trace {
                    // The whole trace (the violation repeats its tail).
                    for line in &v.trace {
                        crate::say!("{line}");
                    }
                }
                eprintln!("FAILED: {v}");
                if !args.keep_going {
                    break;
                }
            }
        }
    }
    out.seconds = started.elapsed().as_secs_f64();
    out
}
