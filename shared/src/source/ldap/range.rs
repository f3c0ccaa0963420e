//! Ranged attribute retrieval (`member;range=0-1499`): Active Directory
//! hands out a large group's members a range at a time, and each range the
//! server answers must start where we asked and move forward. A server that
//! repeats a range, goes back or sends an empty range that is not the last
//! fails the read: looping, or ending with part of a group, would each
//! store a wrong member list.

use ldap3::SearchEntry;

use crate::source::SourceError;

/// The attribute whose values come in ranges.
pub const MEMBER: &str = "member";

/// One answered range: the values' first index and last (`None` for `*`,
/// the last range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    start: u64,
    end: Option<u64>,
}

/// The `member;range=S-E` attribute of an entry: its name and values.
pub fn ranged(entry: &SearchEntry) -> Option<(&str, &[String])> {
    let prefix = format!("{MEMBER};range=");
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.to_ascii_lowercase().starts_with(&prefix))
        .map(|(k, v)| (k.as_str(), v.as_slice()))
}

/// The attribute that asks for the values from `start` on.
pub fn ask_from(start: u64) -> String {
    format!("{MEMBER};range={start}-*")
}

fn parse(name: &str) -> Option<Range> {
    let (_, range) = name.split_once('=')?;
    let (start, end) = range.split_once('-')?;
    Some(Range {
        start: start.parse().ok()?,
        end: match end {
            "*" => None,
            n => Some(n.parse().ok()?),
        },
    })
}

/// Checks the range answered for a request of values from `asked`, and
/// says where the next range starts (`None`: this one was the last).
pub fn next_start(
    dn: &str,
    asked: u64,
    name: &str,
    values: usize,
) -> Result<Option<u64>, SourceError> {
    let bad = |why: &str| {
        SourceError::Protocol(format!(
            "the directory answered {name} for the members of {dn} when asked for values from {asked}: {why}; \
             the group cannot be read completely, so the read was stopped"
        ))
    };
    let range = parse(name).ok_or_else(|| bad("not a range"))?;
    if range.start != asked {
        return Err(bad(
            "the range does not start where asked (repeated or backwards)",
        ));
    }
    let Some(end) = range.end else {
        return Ok(None);
    };
    if end < range.start {
        return Err(bad("the range ends before it starts"));
    }
    if values == 0 {
        return Err(bad("an empty range that is not the last"));
    }
    Ok(Some(end + 1))
}

/// The error when a further range was asked for and none came back.
pub fn missing(dn: &str, asked: u64) -> SourceError {
    SourceError::Protocol(format!(
        "the directory stopped answering the members of {dn} at value {asked} before the last range; \
         the group cannot be read completely, so the read was stopped"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_range_must_move_forward() {
        let next = |asked, name, n| next_start("cn=g", asked, name, n);
        assert_eq!(next(0, "member;range=0-1499", 1500).unwrap(), Some(1500));
        assert_eq!(next(1500, "member;range=1500-*", 20).unwrap(), None);
        assert_eq!(next(0, "member;range=0-*", 0).unwrap(), None, "no members");
        assert!(next(1500, "member;range=0-1499", 1500).is_err(), "repeated");
        assert!(next(1500, "member;range=1000-*", 5).is_err(), "backwards");
        assert!(next(1500, "member;range=1500-1400", 5).is_err());
        assert!(next(1500, "member;range=1500-2999", 0).is_err(), "empty");
        assert!(next(0, "member;range=x-y", 1).is_err());
    }
}
