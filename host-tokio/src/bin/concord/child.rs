//! Signals, and the command a hold runs (`concord lock NAME -- CMD`).
//!
//! The CLI answers SIGINT, SIGTERM and SIGHUP itself instead of dying with them, so that
//! what it holds is given back at once (its session is closed) rather than after the
//! session TTL. While no command runs, a signal ends the subcommand: a wait is abandoned,
//! the session closed, and the CLI exits 128+N. While a command runs under a hold, the
//! signal is forwarded to the command's process group instead; the CLI waits for the
//! command, stops what is left of its group, releases, and exits 128+N.
//!
//! The command runs in a process group of its own, so that everything it starts can be
//! stopped together when the session — and with it the hold — is lost. When the CLI runs
//! in the foreground of a terminal, that group is given the terminal while the command
//! runs, so an interactive command reads the terminal and gets Ctrl-C directly, as it
//! would from a shell.

use crate::CliError;
use nix::sys::signal::{killpg, SigSet, Signal};
use nix::unistd::{getpgrp, tcgetpgrp, tcsetpgrp, Pid};
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// How long a command's process group gets to stop after SIGTERM, once the session is
/// lost, before it is sent SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(1);

/// The exit code of a process ended by signal `n`, as shells report it.
pub(crate) fn signal_exit(n: i32) -> u8 {
    u8::try_from(128 + n).unwrap_or(u8::MAX)
}

/// The termination signals the CLI has received, each routed when it arrives: to
/// whoever has [claimed](Signals::claim) them, or else to
/// [`interrupted`](Signals::interrupted).
#[derive(Clone)]
pub(crate) struct Signals {
    unclaimed: watch::Receiver<Option<Signal>>,
    claimed: watch::Receiver<Option<Signal>>,
    /// Set while a claim is held.
    is_claimed: Arc<AtomicBool>,
}

impl Signals {
    /// Starts answering SIGINT, SIGTERM and SIGHUP.
    pub(crate) fn install() -> Result<Self, CliError> {
        let mut streams = Vec::new();
        for (kind, sig) in [
            (SignalKind::interrupt(), Signal::SIGINT),
            (SignalKind::terminate(), Signal::SIGTERM),
            (SignalKind::hangup(), Signal::SIGHUP),
        ] {
            let stream = signal(kind).map_err(|e| format!("cannot handle {sig}: {e}"))?;
            streams.push((stream, sig));
        }
        let (unclaimed_tx, unclaimed) = watch::channel(None);
        let (claimed_tx, claimed) = watch::channel(None);
        let is_claimed = Arc::new(AtomicBool::new(false));
        for (mut stream, sig) in streams {
            let (unclaimed_tx, claimed_tx, is_claimed) =
                (unclaimed_tx.clone(), claimed_tx.clone(), is_claimed.clone());
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    // `send` marks the value changed even when the same signal repeats.
                    let to = if is_claimed.load(Ordering::SeqCst) { &claimed_tx } else { &unclaimed_tx };
                    let _ = to.send(Some(sig));
                }
            });
        }
        Ok(Self { unclaimed, claimed, is_claimed })
    }

    /// Resolves at the next signal that arrives while nobody has claimed them.
    pub(crate) async fn interrupted(&self) -> Signal {
        next(&mut self.unclaimed.clone()).await
    }

    /// Takes the signals that arrive from now on, until the claim is dropped.
    pub(crate) fn claim(&self) -> Claim {
        let mut rx = self.claimed.clone();
        rx.mark_unchanged();
        self.is_claimed.store(true, Ordering::SeqCst);
        Claim { rx, is_claimed: self.is_claimed.clone() }
    }
}

/// The next signal sent on `rx` after the last one it saw.
async fn next(rx: &mut watch::Receiver<Option<Signal>>) -> Signal {
    loop {
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
        if let Some(sig) = *rx.borrow_and_update() {
            return sig;
        }
    }
}

/// The signals, taken by whoever holds this.
pub(crate) struct Claim {
    rx: watch::Receiver<Option<Signal>>,
    is_claimed: Arc<AtomicBool>,
}

impl Claim {
    /// The next signal received.
    pub(crate) async fn next(&mut self) -> Signal {
        next(&mut self.rx).await
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.is_claimed.store(false, Ordering::SeqCst);
    }
}

/// How a hold ended.
pub(crate) enum Ended {
    /// The command exited by itself with this code (128+N if a signal ended it).
    Exited(u8),
    /// The CLI was sent this signal; a command, if one ran, was given it and has ended.
    Signalled(Signal),
    /// The session, and with it the hold, was lost; a command, if one ran, was stopped.
    Lost,
}

/// Holds until `lost` fires or the CLI is sent a signal (a hold without a command).
pub(crate) async fn hold_until_signal(
    signals: &Signals,
    lost: impl std::future::Future<Output = ()>,
) -> Ended {
    let mut claim = signals.claim();
    tokio::select! {
        () = lost => Ended::Lost,
        sig = claim.next() => Ended::Signalled(sig),
    }
}

/// Runs `cmd` with `env` in a process group of its own, forwarding the CLI's signals to
/// that group, and stopping the whole group if `lost` fires first.
pub(crate) async fn run_command(
    cmd: &[String],
    env: &[(&str, String)],
    signals: &Signals,
    lost: impl std::future::Future<Output = ()>,
) -> Result<Ended, CliError> {
    let (program, args) = cmd.split_first().ok_or_else(|| "no command given".to_string())?;
    // Signals that arrive from here on go to the command once it exists.
    let mut claim = signals.claim();
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let group = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
    let terminal = group.and_then(Terminal::hand_to);
    let mut forwarded = None;
    // With the terminal, Ctrl-Z would stop the command's group where the CLI cannot see it
    // (and the terminal would hang with the lock held): a stopped command is resumed.
    let mut check_stopped = tokio::time::interval(STOPPED_CHECK);
    tokio::pin!(lost);
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.map_err(|e| format!("{program}: {e}"))?;
                // Ended by a signal — forwarded, or Ctrl-C from the terminal it had: what
                // the command left running in its group (a shell's background job ignores
                // SIGINT) goes too, before the hold is released.
                if forwarded.is_some() || status.signal().is_some() {
                    stop_group(&mut child, group).await;
                }
                return Ok(match forwarded {
                    Some(sig) => Ended::Signalled(sig),
                    None => Ended::Exited(exit_code(status)),
                });
            }
            _ = check_stopped.tick(), if terminal.is_some() => {
                if let (Some(group), Some(pid)) = (group, child.id()) {
                    if is_stopped(pid) {
                        eprintln!("concord: {program} runs under a hold and cannot be suspended; resuming it");
                        let _ = killpg(group, Signal::SIGCONT);
                    }
                }
            }
            sig = claim.next() => {
                if let Some(group) = group {
                    let _ = killpg(group, sig);
                }
                forwarded = Some(sig);
            }
            () = &mut lost => {
                eprintln!("concord: the session was lost, and with it what it held; stopping {program} and its process group");
                stop_group(&mut child, group).await;
                return Ok(Ended::Lost);
            }
        }
    }
}

/// How often a command that has the terminal is checked for having been stopped.
const STOPPED_CHECK: Duration = Duration::from_millis(200);

/// Whether process `pid` is stopped (Linux: /proc; elsewhere never).
fn is_stopped(pid: u32) -> bool {
    proc_stat(std::path::Path::new(&format!("/proc/{pid}"))).is_some_and(|(state, _)| state == 'T')
}

/// A process's state letter and process group, from `/proc/PID/stat` (Linux).
fn proc_stat(dir: &std::path::Path) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let pgrp = fields.nth(1)?.parse().ok()?;
    Some((state, pgrp))
}

/// The exit code a command's status stands for.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code.clamp(0, 255)).unwrap_or(u8::MAX),
        (None, Some(sig)) => signal_exit(sig),
        (None, None) => crate::EXIT_ERROR,
    }
}

/// SIGTERM to the whole group, SIGKILL to what is left of it after [`STOP_GRACE`].
async fn stop_group(child: &mut tokio::process::Child, group: Option<Pid>) {
    let Some(group) = group else {
        let _ = child.kill().await;
        return;
    };
    let _ = killpg(group, Signal::SIGTERM);
    // Wait for the command, then for the rest of its group (what it started) to go.
    let _ = tokio::time::timeout(STOP_GRACE, async {
        let _ = child.wait().await;
        while group_runs(group) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Nothing left: no SIGKILL to a group id that may since have been reused.
    if group_runs(group) {
        let _ = killpg(group, Signal::SIGKILL);
    }
    let _ = child.wait().await;
}

/// Whether any process of `group` still runs. A killed process whose parent is gone
/// stays a zombie in the group until init reaps it, so on Linux the group's members are
/// read from /proc and zombies do not count; elsewhere any member does.
fn group_runs(group: Pid) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else { return killpg(group, None).is_ok() };
    procs
        .flatten()
        .any(|p| proc_stat(&p.path()).is_some_and(|(state, pgrp)| pgrp == group.as_raw() && state != 'Z'))
}

/// The controlling terminal, given to a command's process group while it runs and taken
/// back on drop; only when the CLI is the terminal's foreground group.
struct Terminal {
    own: Pid,
}

impl Terminal {
    fn hand_to(group: Pid) -> Option<Self> {
        let stdin = std::io::stdin();
        let own = getpgrp();
        if tcgetpgrp(&stdin).ok()? != own {
            return None;
        }
        tcsetpgrp(&stdin, group).ok()?;
        // A command that touched the terminal before it was handed over was stopped for
        // it; let it go on.
        let _ = killpg(group, Signal::SIGCONT);
        Some(Self { own })
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // Taking the terminal back from the background would stop the CLI with SIGTTOU
        // unless the signal is blocked.
        let mut ttou = SigSet::empty();
        ttou.add(Signal::SIGTTOU);
        let blocked = ttou.thread_block().is_ok();
        let _ = tcsetpgrp(std::io::stdin(), self.own);
        if blocked {
            let _ = ttou.thread_unblock();
        }
    }
}
