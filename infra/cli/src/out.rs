//! What commands print: JSON with `--json` (the shapes documented in
//! docs/cli.md), aligned text otherwise; a closed pipe ends the command
//! quietly (`dirsync members … | head -1`).

use std::io::{ErrorKind, Write};

use serde::Serialize;

/// One line on standard output; a reader that went away ends the process
/// with success, as `head` expects.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|_| out.flush()) {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("dirsync: cannot write the output: {e}");
        std::process::exit(4);
    }
}

/// `value` as JSON with `--json`, else `human(value)`.
pub fn show<T: Serialize>(json: bool, value: &T, human: impl FnOnce(&T) -> String) {
    if json {
        line(&serde_json::to_string_pretty(value).unwrap_or_default());
    } else {
        let text = human(value);
        if !text.is_empty() {
            line(&text);
        }
    }
}

/// Rows under a header, each column as wide as its widest cell.
pub fn table<const N: usize>(
    header: [&str; N],
    rows: impl IntoIterator<Item = [String; N]>,
) -> String {
    let rows: Vec<[String; N]> = std::iter::once(header.map(str::to_owned))
        .chain(rows)
        .collect();
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An optional value as a cell.
pub fn cell<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_owned(), ToString::to_string)
}

/// A closed type's name as the API spells it (`sync_now`, `succeeded`).
pub fn code<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "-".into(),
    }
}
