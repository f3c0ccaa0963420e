//! How a command ends: its exit code, and the message said on the way out.

use std::process::ExitCode;

/// The exit codes, as the README documents them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Done = 0,
    /// The operation ran and reports a failure (a failed run or test).
    Failed = 1,
    /// Refused input, or something named that does not exist.
    Refused = 2,
    /// A run staged for review.
    Staged = 3,
    Internal = 4,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// A command that did not end in [`Exit::Done`], and what to tell.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }

    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(Exit::Refused, message)
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(Exit::Failed, message)
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(Exit::Internal, message.to_string())
    }

    /// An admin-API answer that was not a success: a 4xx is the caller's
    /// (refused, or not found), anything else ours.
    pub fn from_status(status: u16, message: String) -> Self {
        let exit = if (400..500).contains(&status) {
            Exit::Refused
        } else {
            Exit::Internal
        };
        Self::new(exit, message)
    }
}

pub type Outcome = Result<(), Failure>;
