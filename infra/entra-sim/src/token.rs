//! Opaque `$skiptoken` / `$deltatoken` values.
//!
//! A token carries everything needed to serve the next page (query, selection,
//! page size, cursor, tenant and the tenant's token epoch), so pages are
//! served without server-side sessions and a replayed link returns the same
//! page. Tokens are authenticated with the simulator's secret: a client that
//! edits or invents one gets a 400, as it would from Graph.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::props::Select;

const TAG_LEN: usize = 12;

/// Where the next page starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cursor {
    /// First object of the next page (inclusive); `None`: the beginning.
    #[serde(rename = "s", skip_serializing_if = "Option::is_none", default)]
    pub start: Option<Uuid>,
    /// Within group `start`, the last member already sent: the next page
    /// continues that group's `members@delta` after it.
    #[serde(rename = "m", skip_serializing_if = "Option::is_none", default)]
    pub member_after: Option<Uuid>,
}

/// One round of change tracking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Round {
    /// `None`: the initial round (current state); otherwise changes after
    /// this sequence number.
    pub since: Option<u64>,
    /// The round covers changes up to this sequence number.
    pub until: u64,
}

/// Which query a token continues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Query {
    Users,
    Groups,
    Members {
        group: Uuid,
        transitive: bool,
    },
    UsersDelta(Round),
    GroupsDelta(Round),
    /// A `$deltatoken`: the next round starts after `since`.
    UsersDeltaLink {
        since: u64,
    },
    GroupsDeltaLink {
        since: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PageToken {
    #[serde(rename = "t")]
    pub tenant: Uuid,
    #[serde(rename = "e")]
    pub epoch: u32,
    #[serde(rename = "q")]
    pub query: Query,
    #[serde(rename = "l")]
    pub select: Select,
    #[serde(rename = "p")]
    pub page_size: u32,
    #[serde(rename = "c", default)]
    pub cursor: Cursor,
}

/// Why a token was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("the token is not one this service issued")]
    Invalid,
}

/// Seals and opens tokens with the simulator's secret.
pub(crate) struct TokenSealer {
    secret: [u8; 32],
}

impl TokenSealer {
    pub fn new(secret: [u8; 32]) -> Self {
        TokenSealer { secret }
    }

    fn tag(&self, payload: &[u8]) -> [u8; TAG_LEN] {
        let digest = Sha256::new()
            .chain_update(self.secret)
            .chain_update(payload)
            .finalize();
        let mut tag = [0; TAG_LEN];
        tag.copy_from_slice(&digest[..TAG_LEN]);
        tag
    }

    pub fn seal(&self, token: &PageToken) -> String {
        let mut bytes = serde_json::to_vec(token).expect("a page token always serializes");
        let tag = self.tag(&bytes);
        bytes.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn open(&self, raw: &str) -> Result<PageToken, TokenError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(raw.trim())
            .map_err(|_| TokenError::Invalid)?;
        if bytes.len() <= TAG_LEN {
            return Err(TokenError::Invalid);
        }
        let (payload, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        if self.tag(payload) != tag {
            return Err(TokenError::Invalid);
        }
        serde_json::from_slice(payload).map_err(|_| TokenError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> PageToken {
        PageToken {
            tenant: Uuid::from_u128(7),
            epoch: 2,
            query: Query::GroupsDelta(Round {
                since: Some(10),
                until: 20,
            }),
            select: Select::NONE,
            page_size: 100,
            cursor: Cursor {
                start: Some(Uuid::from_u128(9)),
                member_after: None,
            },
        }
    }

    #[test]
    fn round_trips() {
        let sealer = TokenSealer::new([1; 32]);
        let sealed = sealer.seal(&token());
        assert!(!sealed.contains('='), "URL-safe without padding");
        assert_eq!(sealer.open(&sealed), Ok(token()));
    }

    #[test]
    fn refuses_edits_garbage_and_other_secrets() {
        let sealer = TokenSealer::new([1; 32]);
        let sealed = sealer.seal(&token());
        let mut edited = sealed.clone().into_bytes();
        edited[5] = if edited[5] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            sealer.open(std::str::from_utf8(&edited).unwrap()),
            Err(TokenError::Invalid)
        );
        assert_eq!(sealer.open("garbage!"), Err(TokenError::Invalid));
        assert_eq!(
            TokenSealer::new([2; 32]).open(&sealed),
            Err(TokenError::Invalid)
        );
    }
}
