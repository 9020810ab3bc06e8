//! `concord bridge`: serial lines to a cluster (see [`concord_tokio::bridge`]).

use crate::{CliError, Outcome};
use clap::Args;
use concord_tokio::bridge::{run, BridgeConfig, Line};

#[derive(Args)]
pub(crate) struct BridgeArgs {
    /// The serial line: `tcp:HOST:PORT` for a UART exposed on TCP (an emulator's
    /// `-serial tcp:…,server`), or a device path (a pty, /dev/ttyUSB0), which is put in
    /// raw mode.
    #[arg(long)]
    line: String,
    /// Largest serial frame, bytes; the device must use the same.
    #[arg(long, default_value_t = concord_core::wire::link::LinkConfig::default().frame_bytes_max)]
    frame_bytes_max: usize,
    /// Channels (connections to nodes) the device may hold at once.
    #[arg(long, default_value_t = 32)]
    channels_max: usize,
    /// Stop when the line ends instead of waiting for it to come back.
    #[arg(long)]
    exit_when_line_ends: bool,
}

pub(crate) async fn bridge(a: BridgeArgs) -> Result<Outcome, CliError> {
    let line = Line::parse(&a.line);
    if let Line::Device(path) = &line {
        // Raw mode: no echo, no line editing, no CR/LF translation of the link's bytes.
        let status = std::process::Command::new("stty")
            .arg("-F")
            .arg(path)
            .args(["raw", "-echo"])
            .status()
            .map_err(|e| format!("cannot run stty for {}: {e}", path.display()))?;
        if !status.success() {
            return Err(format!("stty could not put {} in raw mode", path.display()).into());
        }
    }
    let mut cfg = BridgeConfig::new(line);
    cfg.link.frame_bytes_max = a.frame_bytes_max;
    cfg.channels_max = a.channels_max;
    cfg.exit_when_line_ends = a.exit_when_line_ends;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let bridge = tokio::spawn(run(cfg, stopped));
    tokio::select! {
        r = bridge => match r {
            Ok(Ok(())) => Ok(Outcome::Ok),
            Ok(Err(e)) => Err(e.to_string().into()),
            Err(e) => Err(format!("the bridge failed: {e}").into()),
        },
        _ = tokio::signal::ctrl_c() => {
            let _ = stop.send(true);
            Ok(Outcome::Ok)
        }
    }
}
