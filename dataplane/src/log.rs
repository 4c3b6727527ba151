//! The data plane's messages on stderr (what it serves at start, warnings,
//! errors, what it leaves at exit), through `tracing` as lns-controlplane's:
//! `--log-format text` writes `lns-dataplane: message` (`warning: `,
//! `error: ` before the message at those levels), `json` one object per
//! line in tracing-subscriber's JSON format (`timestamp`, `level`,
//! `fields.message`, `target`), so one log shipper's parser reads both
//! processes. RUST_LOG filters, as for the control plane [default: info].
//!
//! libbpf's own messages (loading, attaching) go through the same logger,
//! at their level, instead of straight to stderr. Statistics are not
//! messages: they go to stdout as before (`--json`).

use std::fmt;

use libbpf_rs::PrintLevel;
use tracing::{debug, info, warn, Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// `lns-dataplane: [warning: |error: ]message key=value ...`.
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        w.write_str("lns-dataplane: ")?;
        match *event.metadata().level() {
            Level::ERROR => w.write_str("error: ")?,
            Level::WARN => w.write_str("warning: ")?,
            _ => {}
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// A libbpf message (`libbpf: ...\n`) as an event of its level.
fn libbpf(level: PrintLevel, msg: String) {
    let msg = msg.trim_end();
    match level {
        PrintLevel::Warn => warn!(target: "libbpf", "{msg}"),
        PrintLevel::Info => info!(target: "libbpf", "{msg}"),
        PrintLevel::Debug => debug!(target: "libbpf", "{msg}"),
    }
}

/// Installs the process's logger; a second call changes nothing.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let log = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => log.event_format(Plain).try_init(),
        LogFormat::Json => log.json().try_init(),
    };
    if installed.is_ok() {
        // What libbpf prints by default: warnings and information.
        libbpf_rs::set_print(Some((PrintLevel::Info, libbpf)));
    }
}
