//! `concord`: run a node (`serve`), a local 3-node cluster (`dev`), or talk to a cluster.
//!
//! Exit codes: 0 success; 1 error; 2 bad usage; 3 not acquired or condition not met (a
//! try-lock that found the lock held, a compare-and-set that did not match, a conditional
//! write refused); 4 timeout; 5 the session (and what it held) was lost while a command
//! ran under a lock. A command run under a lock, semaphore or election (`lock NAME --
//! CMD`) exits with CMD's own code once it ran, so a script that must tell CMD's codes
//! from Concord's should keep CMD's codes off 2–5 or use `--output json`, which reports
//! the grant on stderr before CMD starts (`lock`, `semaphore run`, `rwlock`; `elect`
//! prints it on stdout).

mod bridge_cmd;
mod child;
mod cli;
mod client_cmds;
mod server_cmds;

use clap::Parser;
use concord_core::machine::Error as MachineError;

use concord_tokio::client::Error;
use std::process::ExitCode;

use cli::*;
use client_cmds::*;
use server_cmds::*;

/// How a command ended.
pub(crate) enum Outcome {
    Ok,
    NotAcquired(String),
    Exit(u8),
}

pub(crate) const EXIT_ERROR: u8 = 1;
pub(crate) const EXIT_USAGE: u8 = 2;
pub(crate) const EXIT_NOT_ACQUIRED: u8 = 3;
pub(crate) const EXIT_TIMEOUT: u8 = 4;
pub(crate) const EXIT_SESSION_LOST: u8 = 5;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONCORD_LOG").unwrap_or_else(|_| {
        let default = if matches!(cli.command, Command::Serve(_) | Command::Dev(_) | Command::Bridge(_)) {
            "info"
        } else {
            "warn"
        };
        tracing_subscriber::EnvFilter::new(default)
    });
    // Colours only for a terminal: a file or a log collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("concord: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::NotAcquired(why)) => {
            eprintln!("concord: {why}");
            ExitCode::from(EXIT_NOT_ACQUIRED)
        }
        Ok(Outcome::Exit(code)) => ExitCode::from(code),
        Err(e) => {
            eprintln!("concord: {e}");
            ExitCode::from(match e {
                CliError::Client(Error::Machine(MachineError::Timeout)) => EXIT_TIMEOUT,
                CliError::Usage(_) => EXIT_USAGE,
                _ => EXIT_ERROR,
            })
        }
    }
}

/// Everything a command can fail with.
#[derive(Debug)]
pub(crate) enum CliError {
    Client(Error),
    Other(String),
    /// Arguments that parse but do not go together (exit 2, as clap's usage errors).
    Usage(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Client(e) => write!(f, "{e}"),
            Self::Other(e) | Self::Usage(e) => f.write_str(e),
        }
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        Self::Client(e)
    }
}

impl From<String> for CliError {
    fn from(e: String) -> Self {
        Self::Other(e)
    }
}

async fn run(command: Command) -> Result<Outcome, CliError> {
    match command {
        Command::Serve(a) => serve(*a).await,
        Command::Dev(a) => dev(a).await,
        Command::Snapshot(a) => snapshot(a).await,
        Command::Bridge(a) => bridge_cmd::bridge(a).await,
        Command::Lock(c) => with_client(c, lock).await,
        Command::Locks(c) => with_client(c, locks).await,
        Command::Semaphore(c) => with_client(c, semaphore).await,
        Command::Rwlock(c) => with_client(c, rwlock).await,
        Command::Counter(c) => with_client(c, counter).await,
        Command::Ref(c) => with_client(c, reference).await,
        Command::Latch(c) => with_client(c, latch).await,
        Command::Barrier(c) => with_client(c, barrier).await,
        Command::Elect(c) => with_client(c, elect).await,
        Command::Kv(c) => with_client(c, kv).await,
        Command::Watch(c) => with_client(c, watch).await,
        Command::Signal(c) => with_client(c, signal).await,
        Command::Status(c) => with_client(c, status).await,
        Command::Member(c) => with_client(c, member).await,
        Command::TransferLeader(c) => with_client(c, transfer).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_parses_with_the_global_client_flags() {
        for args in [
            &["concord", "signal", "subscribe", "a.*", "--queue-group", "g", "--group", "3"][..],
            &["concord", "counter", "--endpoints", "1=127.0.0.1:1", "incr", "n", "--output", "json"],
            &["concord", "lock", "L", "--timeout-ms", "0", "--", "sh", "-c", "true"],
            &["concord", "kv", "put", "k", "v", "--if-match", "3", "--ttl-ms", "10"],
            &["concord", "elect", "E", "--observe", "--count", "2"],
        ] {
            if let Err(e) = Cli::try_parse_from(args) {
                panic!("{args:?}: {e}");
            }
        }
    }
}
