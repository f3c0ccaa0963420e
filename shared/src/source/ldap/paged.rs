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
//! users it never saw; re-applied pages change nothing. With several
//! bases the position names the base the stream is in: a restart begins
//! that base again (the bases before it were handed out whole, and what a
//! full read saw is checkpointed with the pages). Handing the
//! re-read pages back together (rather than one by one, each to be
//! checkpointed again) makes every invocation move the stream on by at
//! least one page: the engine always waits for an invocation's first read.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::conn::Session;
use super::members::Directory;
use crate::source::ReadFrom;

/// Where a stream continues: which search, the base it is in (a connector
/// may search several, one after the other), how many pages it has handed
/// out in that base, and how its read began (a restart begins the same
/// way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub search: Uuid,
    /// `None` in positions handed out before there were several bases:
    /// the first base.
    #[serde(default)]
    pub base: Option<String>,
    pub pages: u64,
    pub from: ReadFrom,
}

impl Position {
    pub fn starting(from: &ReadFrom) -> Self {
        Self {
            search: Uuid::new_v4(),
            base: None,
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
    /// The bases the stream reads, one after the other, and the one it is
    /// in.
    pub bases: Vec<String>,
    pub at: usize,
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
    /// The base the next page is read from.
    pub fn base(&self) -> &str {
        &self.bases[self.at]
    }

    /// Moves on to the next base after the current one was read whole;
    /// `false` when it was the last.
    pub fn next_base(&mut self) -> bool {
        if self.at + 1 >= self.bases.len() {
            return false;
        }
        self.at += 1;
        self.cookie.clear();
        self.position.pages = 0;
        self.position.base = Some(self.bases[self.at].clone());
        true
    }

    /// Places a search begun again where `position` was, and says how many
    /// pages to read to pass it (see the module's comment): its base from
    /// the start and one page more. A base no longer searched (the bases
    /// changed) restarts the stream from its first base.
    pub fn resume_at(&mut self, position: &Position) -> u64 {
        let at = position
            .base
            .as_ref()
            .and_then(|b| self.bases.iter().position(|x| x == b));
        if let Some(at) = at {
            self.at = at;
            self.position.base = Some(self.bases[at].clone());
        }
        position.pages + 1
    }

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
        let within = Position {
            base: Some("o=AcmeEU".into()),
            ..p.clone()
        };
        assert_eq!(Position::parse(&within.text()), within);
    }

    #[test]
    fn positions_from_before_several_bases_still_parse_in_the_first() {
        let mut old = serde_json::to_value(Position {
            pages: 2,
            ..Position::starting(&ReadFrom::Full)
        })
        .unwrap();
        old.as_object_mut().unwrap().remove("base");
        let p = Position::parse(&old.to_string());
        assert_eq!((p.base, p.pages, p.from), (None, 2, ReadFrom::Full));
    }
}
