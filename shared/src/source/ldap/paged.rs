//! A stream read in pages: each paged-results page is one `SourcePage`, so
//! the engine checkpoints it and may stop at its deadline between pages.
//!
//! The paged-results cookie lives only on the connection that searched, so
//! the source keeps each stream's open search (session and cookie) between
//! pages, keyed by the position it handed out. A continuation that finds no
//! such search (a new invocation, a new source object, a read dropped at
//! the deadline) starts the stream's search again from the start and hands
//! back, as one page, every page up to the checkpoint and one more. Skipping
//! the first pages by count instead would skip entries whenever the
//! directory changed in between, and a full read's sweep would then remove
//! users it never saw; re-applied pages change nothing. Handing the
//! re-read pages back together (rather than one by one, each to be
//! checkpointed again) makes every invocation move the stream on by at
//! least one page: the engine always waits for an invocation's first read.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::conn::Session;
use super::members::Directory;
use crate::source::ReadFrom;

/// Where a stream continues: which search, how many pages it has handed
/// out, and how its read began (a restart begins the same way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub search: Uuid,
    pub pages: u64,
    pub from: ReadFrom,
}

impl Position {
    pub fn starting(from: &ReadFrom) -> Self {
        Self {
            search: Uuid::new_v4(),
            pages: 0,
            from: from.clone(),
        }
    }

    /// A position handed out earlier. One that cannot be read (it never
    /// came from here) restarts the stream in full, which is always safe.
    pub fn parse(text: &str) -> Self {
        serde_json::from_str(text).unwrap_or_else(|_| Self::starting(&ReadFrom::Full))
    }

    pub fn text(&self) -> String {
        serde_json::to_string(self).expect("a position serializes")
    }
}

/// What a stream's entries need to become changes, found once per read.
pub enum Context {
    /// Domino: the members of the deny-access group (disabled).
    Users { denied: HashSet<String> },
    /// Every object's DN → id, to resolve members; read when the first
    /// group needs it.
    Groups { directory: Option<Directory> },
}

/// A stream's search between two pages.
pub struct OpenSearch {
    pub session: Session,
    pub position: Position,
    pub filter: String,
    /// Empty before the first page.
    pub cookie: Vec<u8>,
    /// The cursor to hand out when the stream ends.
    pub cursor: Option<String>,
    pub context: Context,
    /// Requests sent outside the session (the directory read).
    pub sent_elsewhere: u64,
    /// Requests already counted on pages handed out.
    pub reported: u64,
}

impl OpenSearch {
    /// Requests since the last page handed out.
    pub fn unreported(&mut self) -> u64 {
        let sent = self.session.sent + self.sent_elsewhere;
        let new = sent - self.reported;
        self.reported = sent;
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_unknown_ones_restart_in_full() {
        let p = Position {
            pages: 3,
            ..Position::starting(&ReadFrom::Delta("ad1:x:5".into()))
        };
        assert_eq!(Position::parse(&p.text()), p);
        let lost = Position::parse("not a position");
        assert_eq!((lost.pages, lost.from), (0, ReadFrom::Full));
    }
}
