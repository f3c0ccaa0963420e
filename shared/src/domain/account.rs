//! A customer account: the unit that owns connectors and addresses.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AccountId, Region, ValidationError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub region: Region,
    pub created_at: DateTime<Utc>,
    /// Mimecast's account-wide hold: while any connector of the account is
    /// paused or its last run failed, the removals and disables of all its
    /// connectors are staged for review (a directory split over several
    /// connectors can look emptied when one of them is down).
    #[serde(default = "on")]
    pub hold_on_connector_trouble: bool,
}

fn on() -> bool {
    true
}

impl Account {
    pub fn new(
        id: AccountId,
        name: impl Into<String>,
        region: Region,
        now: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        let name = name.into().trim().to_owned();
        if name.is_empty() || name.len() > 200 {
            return Err(ValidationError::new(
                "name",
                "give the account a name of 1 to 200 characters",
            ));
        }
        Ok(Self {
            id,
            name,
            region,
            created_at: now,
            hold_on_connector_trouble: true,
        })
    }
}
