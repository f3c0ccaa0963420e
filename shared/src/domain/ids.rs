//! Identifiers. Each is a newtype so an account id can never be passed where a
//! connector id is expected, and each is validated once, at the edge.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// Characters that would break the store's `#`-separated keys or a URL path
/// are refused in platform-assigned ids.
fn check_slug(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    // A path segment of its own: "." and ".." would name another path.
    if value == "." || value == ".." {
        return Err(ValidationError::new(
            field,
            "must not be \".\" or \"..\"; use letters or digits too",
        ));
    }
    if value.len() > max {
        return Err(ValidationError::new(
            field,
            format!("is {} characters long; use at most {max}", value.len()),
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '.'))
    {
        return Err(ValidationError::new(
            field,
            format!(
                "contains {bad:?}; use only letters, digits, '-', '_' and '.' (for example \"acme-eu\")"
            ),
        ));
    }
    Ok(())
}

macro_rules! slug_id {
    ($(#[$meta:meta])* $name:ident, $field:literal, $max:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Result<Self, ValidationError> {
                let value = value.into();
                check_slug($field, &value, $max)?;
                Ok(Self(value))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValidationError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

slug_id!(
    /// A customer account of the platform.
    AccountId,
    "account",
    64
);
slug_id!(
    /// One connection from an account to one directory.
    ConnectorId,
    "connector",
    64
);

/// The stable id of an object in its source directory: a Graph object id, an
/// AD `objectGUID`, a Domino DN, a Google id. Opaque to us, never empty.
/// Any characters are allowed (LDAP DNs contain `#`, `,`, `=`), so keys built
/// from it always put it last.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SourceId(String);

impl SourceId {
    /// DynamoDB keys are at most 1 KiB (sort key) and we prefix them.
    const MAX: usize = 900;

    pub fn new(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into();
        if value.is_empty() {
            return Err(ValidationError::new(
                "id",
                "a directory object has an empty id",
            ));
        }
        if value.len() > Self::MAX {
            return Err(ValidationError::new(
                "id",
                format!("a directory object id is longer than {} bytes", Self::MAX),
            ));
        }
        Ok(Self(value))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SourceId {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<SourceId> for String {
    fn from(id: SourceId) -> String {
        id.0
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A sync run. Time-ordered (`<epoch-ms, 13 digits>-<random>`) so that the
/// newest runs of a connector come first in a descending key query.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(String);

impl RunId {
    pub fn generate(now: chrono::DateTime<chrono::Utc>) -> Self {
        let suffix: u32 = rand::random();
        Self(format!(
            "{:013}-{suffix:08x}",
            now.timestamp_millis().max(0)
        ))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RunId {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let ok = value.len() == 22
            && value.as_bytes()[13] == b'-'
            && value[..13].bytes().all(|b| b.is_ascii_digit())
            && value[14..].bytes().all(|b| b.is_ascii_hexdigit());
        if ok {
            Ok(Self(value))
        } else {
            Err(ValidationError::new(
                "run",
                format!("{value:?} is not a run id (expected like 1732262400000-1a2b3c4d)"),
            ))
        }
    }
}

impl From<RunId> for String {
    fn from(id: RunId) -> String {
        id.0
    }
}

impl std::str::FromStr for RunId {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::try_from(s.to_owned())
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_refuse_key_separators_and_say_what_is_allowed() {
        let err = AccountId::new("acme#eu").unwrap_err();
        assert_eq!(err.field, "account");
        assert!(err.problem.contains("'#'"), "{err}");
        assert!(AccountId::new("").is_err());
        assert!(ConnectorId::new("x".repeat(65)).is_err());
        assert_eq!(
            ConnectorId::new("entra-main").unwrap().as_str(),
            "entra-main"
        );
    }

    #[test]
    fn run_ids_sort_by_time_and_round_trip() {
        let t1 = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let t2 = chrono::DateTime::from_timestamp(1_700_000_001, 0).unwrap();
        let (a, b) = (RunId::generate(t1), RunId::generate(t2));
        assert!(a < b);
        assert_eq!(a.as_str().parse::<RunId>().unwrap(), a);
        assert!("nope".parse::<RunId>().is_err());
    }
}
