//! One module per command group; each takes the [`Ctx`] and its own
//! arguments.

pub mod account;
pub mod cert;
pub mod connector;
pub mod consent;
pub mod lookup;
pub mod runs;
pub mod sync;

use crate::client::Client;
use crate::local::Local;

/// What every command works with.
pub struct Ctx<'a> {
    pub api: Client<'a>,
    pub local: &'a Local,
    /// `--json`: print the documented JSON shapes instead of text.
    pub json: bool,
}

/// Reads a file, or standard input for `-`.
pub fn read_input(path: &std::path::Path) -> Result<String, crate::exit::Failure> {
    let read = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    };
    read.map_err(|e| crate::exit::Failure::refused(format!("cannot read {}: {e}", path.display())))
}
