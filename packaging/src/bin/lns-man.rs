//! lns-man: writes the man pages of the package's binaries.
//!
//! `lns-man --bin-dir target/release --out packaging/man` runs each binary's
//! `--help` and renders its pages with clap_mangen (see `lns_packaging`);
//! `scripts/build-deb.sh` runs it before `cargo deb`.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(version, about = "Render the man pages of lns-dataplane, lns-controlplane and lnsctl")]
struct Cli {
    /// Directory holding the built binaries.
    #[arg(long, value_name = "DIR")]
    bin_dir: PathBuf,
    /// Directory to write the pages to (created; its *.8 files replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let pages = lns_packaging::man_pages(&cli.bin_dir)?;
    std::fs::create_dir_all(&cli.out).with_context(|| format!("creating {}", cli.out.display()))?;
    // Pages of subcommands that no longer exist must not be packaged.
    for e in std::fs::read_dir(&cli.out)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == lns_packaging::SECTION) {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    for p in &pages {
        let path = cli.out.join(&p.file_name);
        std::fs::write(&path, &p.roff).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("lns-man: {} pages in {}", pages.len(), cli.out.display());
    Ok(())
}
