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
        })
    }
}
