//! The lns Debian package: its cargo-deb metadata (this crate's
//! `Cargo.toml`), maintainer scripts (`debian/`), and the man pages of its
//! binaries, rendered by [`man_pages`] with clap_mangen.
//!
//! A man page is rendered from a `clap::Command`, and the binaries' commands
//! are not all reachable from a library: lnsctl's lives in its `main.rs`. So
//! each page is rendered from the built binary itself: its `--help` (and
//! each subcommand's), which clap writes in a fixed layout, is read back
//! into a `Command` (about, usage, options with their value names and
//! descriptions, positional arguments, subcommands) and handed to
//! clap_mangen. The pages describe exactly the binaries the package holds,
//! built in the same cargo invocation, with no second copy of any flag or
//! text; a layout this reader does not know fails the package's tests
//! (`tests/package.rs` checks every flag of every `--help` is in a page).

#![forbid(unsafe_code)]

use std::path::Path;
use std::process::Command as Process;

use anyhow::{bail, ensure, Context, Result};
use clap::{Arg, ArgAction, Command};

/// Man section of every page: all three are system administration
/// commands (they need root, or the units' capabilities).
pub const SECTION: &str = "8";

/// The binaries of the package, each with a man page.
pub const BINARIES: [&str; 3] = ["lns-dataplane", "lns-controlplane", "lnsctl"];

/// A rendered page: file name (`lnsctl-tunnel-list.8`) and roff source.
pub struct Page {
    pub file_name: String,
    pub roff: Vec<u8>,
}

/// The pages of every binary in `bin_dir`: one per binary and one per
/// subcommand (`lnsctl-static-session-add.8`), as clap_mangen's
/// `generate_to` names them.
pub fn man_pages(bin_dir: &Path) -> Result<Vec<Page>> {
    let mut pages = Vec::new();
    for name in BINARIES {
        let bin = bin_dir.join(name);
        let version = run(&bin, &["--version"])?;
        let version = version.split_whitespace().nth(1).context("--version printed no version")?.to_string();
        let cmd = command_from_help(&bin, name, &[], &version)?;
        render(&cmd, name, &mut pages)?;
    }
    Ok(pages)
}

fn render(cmd: &Command, file_stem: &str, pages: &mut Vec<Page>) -> Result<()> {
    let mut roff = Vec::new();
    let mut page = cmd.clone().name(leak(file_stem.to_string()));
    // Sets what the builder leaves to defaults (how many values each
    // option takes), which the synopsis is written from.
    page.build();
    clap_mangen::Man::new(page).section(SECTION).render(&mut roff)?;
    pages.push(Page { file_name: format!("{file_stem}.{SECTION}"), roff });
    for sub in cmd.get_subcommands() {
        render(sub, &format!("{file_stem}-{}", sub.get_name()), pages)?;
    }
    Ok(())
}

/// clap takes names as `&'static str` unless its `string` feature is on,
/// which would rebuild clap and everything above it in the workspace for a
/// one-shot tool: its few names live until it exits anyway.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn run(bin: &Path, args: &[&str]) -> Result<String> {
    let out = Process::new(bin).args(args).output().with_context(|| format!("running {}", bin.display()))?;
    ensure!(
        out.status.success(),
        "{} {}: {}",
        bin.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// The command `bin path... --help` describes, with its subcommands.
pub fn command_from_help(bin: &Path, name: &str, path: &[&str], version: &str) -> Result<Command> {
    let mut args = path.to_vec();
    args.push("--help");
    let help = run(bin, &args)?;
    let parsed = parse_help(&help).with_context(|| format!("reading `{name} {}`", args.join(" ")))?;
    let mut cmd = Command::new(leak(path.last().copied().unwrap_or(name).to_string()))
        .version(leak(version.to_string()))
        .disable_help_flag(true)
        .disable_version_flag(true)
        .disable_help_subcommand(true);
    let (short, long) = split_about(&parsed.about);
    cmd = cmd.about(short);
    if let Some(long) = long {
        cmd = cmd.long_about(long);
    }
    let required: Vec<&str> = required_in_usage(&parsed.usage);
    for (i, a) in parsed.arguments.iter().enumerate() {
        let id = a.spec.trim_matches(|c| matches!(c, '<' | '>' | '[' | ']' | '.')).to_string();
        cmd = cmd.arg(
            Arg::new(leak(id.clone()))
                .value_name(leak(id))
                .index(i + 1)
                .required(a.spec.starts_with('<'))
                .long_help(a.help.clone()),
        );
    }
    for o in &parsed.options {
        let spec = parse_option_spec(&o.spec)?;
        let id =
            spec.long.clone().or_else(|| spec.short.map(String::from)).context("option without a name")?;
        let mut arg = Arg::new(leak(id)).long_help(o.help.clone());
        if let Some(l) = &spec.long {
            arg = arg.long(leak(l.clone())).required(required.contains(&format!("--{l}").as_str()));
        }
        if let Some(s) = spec.short {
            arg = arg.short(s);
        }
        arg = match spec.value_name {
            Some(v) => arg
                .value_name(leak(v))
                .action(ArgAction::Set)
                .num_args(if spec.optional { 0..=1 } else { 1..=1 })
                .require_equals(spec.equals),
            None => arg.action(ArgAction::SetTrue).num_args(0),
        };
        cmd = cmd.arg(arg);
    }
    for (sub, about) in &parsed.commands {
        if sub == "help" {
            continue;
        }
        let mut sub_path = path.to_vec();
        sub_path.push(sub);
        let mut sc = command_from_help(bin, name, &sub_path, version)?;
        if sc.get_about().is_none() {
            sc = sc.about(about.clone());
        }
        cmd = cmd.subcommand(sc);
    }
    Ok(cmd)
}

/// A `--help` text, as clap lays it out.
#[derive(Debug, Default, PartialEq)]
pub struct Help {
    /// Everything above `Usage:`.
    pub about: String,
    pub usage: String,
    pub arguments: Vec<Entry>,
    pub options: Vec<Entry>,
    /// `Commands:`: name and one-line about.
    pub commands: Vec<(String, String)>,
}

/// One option or positional argument: its header (`-c, --config <FILE>`)
/// and its description, paragraphs separated by a blank line.
#[derive(Debug, Default, PartialEq)]
pub struct Entry {
    pub spec: String,
    pub help: String,
}

/// Reads clap's help layouts: one line per entry (`  --json   Machine-
/// readable output`) or the description on the following lines, indented
/// ten columns (`--help` when any entry has a long description).
pub fn parse_help(text: &str) -> Result<Help> {
    #[derive(Clone, Copy, PartialEq)]
    enum Section {
        About,
        Usage,
        Arguments,
        Options,
        Commands,
        Other,
    }
    let mut h = Help::default();
    let mut section = Section::About;
    let mut about = Vec::new();
    for line in text.lines() {
        if let Some(usage) = line.strip_prefix("Usage: ") {
            section = Section::Usage;
            h.usage = usage.trim().to_string();
            continue;
        }
        if !line.starts_with(' ') && line.ends_with(':') && section != Section::About {
            section = match line {
                "Arguments:" => Section::Arguments,
                "Options:" => Section::Options,
                "Commands:" => Section::Commands,
                _ => Section::Other,
            };
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let body = line.trim();
        match section {
            Section::About => about.push(line.trim_end()),
            Section::Usage => {
                // A long usage goes on, indented, on the next lines.
                if !body.is_empty() {
                    h.usage.push(' ');
                    h.usage.push_str(body);
                }
            }
            Section::Commands if !body.is_empty() => {
                if indent < 10 {
                    let (name, about) = body.split_once("  ").unwrap_or((body, ""));
                    h.commands.push((name.to_string(), about.trim().to_string()));
                } else if let Some((_, about)) = h.commands.last_mut() {
                    about.push(' ');
                    about.push_str(body);
                }
            }
            Section::Arguments | Section::Options => {
                let entries = if section == Section::Options { &mut h.options } else { &mut h.arguments };
                if !body.is_empty() && indent < 10 {
                    let (spec, help) = split_header(body);
                    entries.push(Entry { spec: spec.to_string(), help: help.to_string() });
                } else if let Some(e) = entries.last_mut() {
                    if body.is_empty() {
                        if !e.help.is_empty() && !e.help.ends_with("\n\n") {
                            e.help.push_str("\n\n");
                        }
                    } else {
                        if !e.help.is_empty() && !e.help.ends_with('\n') {
                            // A line of its own in clap's layout: a list item
                            // (possible values) becomes a paragraph, since
                            // roff fills the lines of one.
                            e.help.push_str(if body.starts_with("- ") { "\n\n" } else { "\n" });
                        }
                        e.help.push_str(body);
                    }
                } else if !body.is_empty() {
                    bail!("description before any entry: {line:?}");
                }
            }
            Section::Commands | Section::Other => {}
        }
    }
    for e in h.options.iter_mut().chain(h.arguments.iter_mut()) {
        e.help = e.help.trim_end().to_string();
    }
    h.about = about.join("\n").trim().to_string();
    ensure!(!h.usage.is_empty(), "no Usage: line");
    Ok(h)
}

/// `--instance <INSTANCE>    Instance whose...` -> (spec, description):
/// the header ends at the first run of two spaces.
fn split_header(body: &str) -> (&str, &str) {
    match body.find("  ") {
        Some(i) => (body[..i].trim(), body[i..].trim()),
        None => (body, ""),
    }
}

/// The about's first paragraph is the short about (NAME), the whole of it
/// the long one (DESCRIPTION).
fn split_about(about: &str) -> (String, Option<String>) {
    match about.split_once("\n\n") {
        Some((first, _)) => (first.trim_end_matches('.').to_string(), Some(about.to_string())),
        None => (about.trim_end_matches('.').to_string(), None),
    }
}

/// The options a usage line names outside brackets: the required ones.
fn required_in_usage(usage: &str) -> Vec<&str> {
    let mut depth = 0usize;
    let mut out = Vec::new();
    for tok in usage.split_whitespace() {
        if depth == 0 && tok.starts_with("--") {
            out.push(tok);
        }
        depth = (depth + tok.matches('[').count()).saturating_sub(tok.matches(']').count());
    }
    out
}

#[derive(Debug, PartialEq)]
struct OptionSpec {
    short: Option<char>,
    long: Option<String>,
    value_name: Option<String>,
    /// `--json[=<BOOL>]`: the value may be left out.
    optional: bool,
    /// `--x=<V>` or `--x[=<V>]`: the value is joined with `=`.
    equals: bool,
}

/// `-c, --config <FILE>`, `--json`, `--pool <PREFIX/LEN[,UNIT]>`,
/// `--busy-poll[=<BOOL>]`.
fn parse_option_spec(spec: &str) -> Result<OptionSpec> {
    let split = [" <", " [<", "[=<", "=<"].iter().filter_map(|p| spec.find(p).map(|i| (i, *p))).min();
    let (names, value) = match split {
        Some((i, p)) => (&spec[..i], Some((&spec[i..], p))),
        None => (spec, None),
    };
    let mut out = OptionSpec { short: None, long: None, value_name: None, optional: false, equals: false };
    for n in names.split(',').map(str::trim) {
        if let Some(l) = n.strip_prefix("--") {
            out.long = Some(l.to_string());
        } else if let Some(s) = n.strip_prefix('-') {
            let mut c = s.chars();
            match (c.next(), c.next()) {
                (Some(ch), None) => out.short = Some(ch),
                _ => bail!("bad short option {n:?} in {spec:?}"),
            }
        } else {
            bail!("not an option: {spec:?}");
        }
    }
    if let Some((v, prefix)) = value {
        out.optional = prefix.contains('[');
        out.equals = prefix.contains('=');
        let v = v.trim_end_matches("...");
        let v = if out.optional { v.strip_suffix(']').context("unclosed [")? } else { v };
        let start = v.find('<').context("value name not in <>")?;
        let name = v[start + 1..].strip_suffix('>').context("value name not in <>")?;
        out.value_name = Some(name.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEXT_LINE: &str = "\
The LNS's AF_XDP fast path.

Attaches the XDP steering program.

Usage: lns-dataplane [OPTIONS] --access-if <IF>

Options:
  -c, --config <FILE>
          The node's TOML configuration file

      --xdp-mode <XDP_MODE>
          XDP attach mode [default: native]

          Possible values:
          - native: In the driver
          - skb:    Generic XDP

      --busy-poll
          Spin instead of sleeping
";

    const COMPACT: &str = "\
Close a tunnel with StopCCN; its sessions go with it

Usage: lnsctl tunnel kill [OPTIONS] <ID>

Arguments:
  <ID>  Our tunnel id

Options:
      --instance <INSTANCE>    Instance whose maps to use [default: default]
      --json                   Machine-readable output
  -h, --help                   Print help
";

    #[test]
    fn next_line_layout() {
        let h = parse_help(NEXT_LINE).unwrap();
        assert_eq!(h.about, "The LNS's AF_XDP fast path.\n\nAttaches the XDP steering program.");
        assert_eq!(h.usage, "lns-dataplane [OPTIONS] --access-if <IF>");
        assert_eq!(h.options.len(), 3);
        assert_eq!(
            h.options[0],
            Entry { spec: "-c, --config <FILE>".into(), help: "The node's TOML configuration file".into() }
        );
        assert_eq!(
            h.options[1].help,
            "XDP attach mode [default: native]\n\nPossible values:\n\n- native: In the driver\n\n- skb:    Generic XDP"
        );
        assert_eq!(h.options[2].spec, "--busy-poll");
        assert_eq!(required_in_usage(&h.usage), ["--access-if"]);
    }

    #[test]
    fn compact_layout() {
        let h = parse_help(COMPACT).unwrap();
        assert_eq!(h.arguments, [Entry { spec: "<ID>".into(), help: "Our tunnel id".into() }]);
        assert_eq!(h.options[0].spec, "--instance <INSTANCE>");
        assert_eq!(h.options[0].help, "Instance whose maps to use [default: default]");
        assert_eq!(h.options[2].spec, "-h, --help");
    }

    #[test]
    fn option_specs() {
        assert_eq!(
            parse_option_spec("-c, --config <FILE>").unwrap(),
            OptionSpec {
                short: Some('c'),
                long: Some("config".into()),
                value_name: Some("FILE".into()),
                optional: false,
                equals: false
            }
        );
        assert_eq!(
            parse_option_spec("--busy-poll[=<BOOL>]").unwrap(),
            OptionSpec {
                short: None,
                long: Some("busy-poll".into()),
                value_name: Some("BOOL".into()),
                optional: true,
                equals: true
            }
        );
        assert_eq!(
            parse_option_spec("--pool <PREFIX/LEN[,UNIT]>").unwrap().value_name.as_deref(),
            Some("PREFIX/LEN[,UNIT]")
        );
        assert_eq!(
            parse_option_spec("--json").unwrap(),
            OptionSpec {
                short: None,
                long: Some("json".into()),
                value_name: None,
                optional: false,
                equals: false
            }
        );
        assert!(parse_option_spec("config").is_err());
    }

    #[test]
    fn required_options() {
        assert_eq!(
            required_in_usage("lnsctl static-session add [OPTIONS] --local-tunnel <T> --lac <ADDR:PORT>"),
            ["--local-tunnel", "--lac"]
        );
        assert!(required_in_usage("x [--a <B>] [OPTIONS]").is_empty());
    }
}
