//! How a sync shows itself while it runs, on standard error: a bar with
//! pages, objects and their rate on a terminal, a plain line every few
//! seconds otherwise (a log file, CI).

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dirsync_shared::engine::{Progress, ProgressHook};
use indicatif::{ProgressBar, ProgressStyle};

/// How often a plain line is written when standard error is no terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

fn objects(p: &Progress) -> u64 {
    let c = &p.counts;
    c.created + c.updated + c.unchanged + c.skipped + c.removed + c.disabled + c.enabled
}

fn describe(p: &Progress) -> String {
    let c = &p.counts;
    format!(
        "{} page {}: {} created, {} updated, {} unchanged, {} skipped, {} throttle waits",
        p.stream, p.pages, c.created, c.updated, c.unchanged, c.skipped, p.throttled
    )
}

/// The engine's progress hook for this process.
pub fn hook() -> ProgressHook {
    if std::io::stderr().is_terminal() {
        bar()
    } else {
        plain()
    }
}

fn bar() -> ProgressHook {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {pos} objects ({per_sec}) {msg}")
            .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    ProgressHook(Arc::new(move |p: &Progress| {
        bar.set_position(objects(p));
        bar.set_message(describe(p));
    }))
}

fn plain() -> ProgressHook {
    let last = Mutex::new(Instant::now());
    ProgressHook(Arc::new(move |p: &Progress| {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= PLAIN_EVERY {
            *last = Instant::now();
            eprintln!("{}", describe(p));
        }
    }))
}
