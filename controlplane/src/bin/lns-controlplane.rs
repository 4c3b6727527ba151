//! lns-controlplane: the L2TPv2 control plane of an LNS instance.
//!
//! Answers LACs on UDP 1701, writes their sessions into the data plane's
//! pinned maps, and serves `lnsctl` on a Unix socket. See
//! `lns_controlplane::daemon::config` for the configuration file.

#![forbid(unsafe_code)]

use anyhow::Result;
use clap::Parser;
use lns_controlplane::daemon::{self, Config, Flags};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(version, about = "L2TPv2 control plane of the LNS")]
struct Cli {
    #[command(flatten)]
    flags: Flags,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let cfg = Config::load(&cli.flags)?;
    // --log wins, then RUST_LOG, then the file's `log`.
    let filter = match (&cli.flags.log, std::env::var("RUST_LOG")) {
        (None, Ok(env)) => EnvFilter::try_new(env)?,
        _ => EnvFilter::try_new(&cfg.log)?,
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let log = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cfg.log_format {
        daemon::config::LogFormat::Text => log.with_ansi(ansi).init(),
        daemon::config::LogFormat::Json => log.json().init(),
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(daemon::run(cfg))
}
