//! The crate's module graph is the layering `src/lib.rs` documents: every
//! `crate::` path in a module's code (tests and comments aside) names a
//! module on an earlier line of that layering. So the graph stays acyclic
//! and the documentation stays true.

use std::collections::BTreeMap;
use std::path::Path;

/// The modules of each line of the "# Layering" block of src/lib.rs.
fn documented_layers(lib: &str) -> Vec<Vec<String>> {
    let block = lib.split("//! # Layering").nth(1).expect("a Layering section");
    let code = block.split("//! ```text").nth(1).expect("a text block");
    let code = code.split("//! ```").next().expect("its end");
    code.lines()
        .map(|l| l.trim_start_matches("//!").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            // Module names come first, comma-separated; a description
            // follows after two spaces.
            let names = l.split("  ").next().unwrap_or("");
            names.split(',').map(|n| n.trim().to_string()).collect()
        })
        .collect()
}

/// The modules a source file's non-test code names through `crate::`.
fn uses(source: &str) -> Vec<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or(source);
    let mut out = Vec::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let line = line.split("//").next().unwrap_or(line);
        for (i, _) in line.match_indices("crate::") {
            let name: String =
                line[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            assert!(!name.is_empty(), "a grouped `crate::{{..}}` import: name modules one by one ({line})");
            out.push(name);
        }
    }
    out
}

#[test]
fn every_module_uses_only_the_layers_before_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let mut layer_of = BTreeMap::new();
    for (n, names) in documented_layers(&lib).into_iter().enumerate() {
        for name in names {
            layer_of.insert(name, n);
        }
    }
    // Every module of the crate is in the layering, and only those.
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(&src).expect("src") {
        let path = entry.expect("entry").path();
        let name = path.file_stem().and_then(|s| s.to_str()).expect("name").to_string();
        if name == "lib" {
            continue;
        }
        // A module directory (client/) counts as one module, its files together.
        let files: Vec<_> = if path.is_dir() {
            std::fs::read_dir(&path).expect("dir").map(|e| e.expect("entry").path()).collect()
        } else {
            vec![path]
        };
        let text: String = files.iter().map(|f| std::fs::read_to_string(f).expect("source")).collect();
        modules.insert(name, text);
    }
    assert_eq!(
        modules.keys().collect::<Vec<_>>(),
        layer_of.keys().collect::<Vec<_>>(),
        "the layering in src/lib.rs names every module"
    );
    for (name, text) in &modules {
        let own = layer_of[name];
        for used in uses(text) {
            if used == *name {
                continue;
            }
            let theirs = *layer_of.get(&used).unwrap_or_else(|| panic!("{name} uses unknown crate::{used}"));
            assert!(theirs < own, "{name} (line {own}) uses {used} (line {theirs}): not on an earlier line");
        }
    }
}
