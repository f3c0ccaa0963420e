//! The deletion guard's limits, per connector: how much one run may remove
//! or disable before it is staged for an administrator's review (Entra
//! provisioning's "accidental deletions" threshold, GCDS's deletion limits,
//! Mimecast's "maximum synchronization deletions").

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// Below this many, a percentage never stages: one leaver in a ten-person
/// tenant is not an accident.
pub const PERCENT_FLOOR: u64 = 10;

/// One kind of object's limit: more than `max_count` always stages; more
/// than `max_percent` of those stored stages once [`PERCENT_FLOOR`] are
/// affected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub max_count: u64,
    pub max_percent: u64,
}

impl Default for Limit {
    fn default() -> Self {
        Self {
            max_count: 500,
            max_percent: 10,
        }
    }
}

impl Limit {
    /// Whether the number stored can change the verdict on `affected`:
    /// not below the floor, nor above the count (which stages whatever is
    /// stored).
    pub fn weighs_stored(&self, affected: u64) -> bool {
        affected >= PERCENT_FLOOR && affected <= self.max_count
    }

    /// Whether `affected` of `stored` stages.
    pub fn trips(&self, affected: u64, stored: u64) -> bool {
        self.over_count(affected) || self.over_percent(affected, stored)
    }

    pub fn over_count(&self, affected: u64) -> bool {
        affected > self.max_count
    }

    pub fn over_percent(&self, affected: u64, stored: u64) -> bool {
        affected >= PERCENT_FLOOR
            && u128::from(affected) * 100 > u128::from(self.max_percent) * u128::from(stored.max(1))
    }
}

/// The limits of one connector, separately for users (removals and
/// disables), groups and memberships. A group that would lose more than
/// the memberships percentage of its own members stages too: removing 691
/// of All Staff's 2,764 members is an accident even in a directory of
/// 50,000 memberships.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionGuard {
    #[serde(default)]
    pub users: Limit,
    #[serde(default)]
    pub groups: Limit,
    #[serde(default)]
    pub memberships: Limit,
}

/// The settings that set a connector's limits, with what each limits.
pub const GUARD_SETTINGS: [(&str, &str); 6] = [
    ("max_user_removals", "users removed or disabled"),
    (
        "max_user_removals_percent",
        "users removed or disabled, as a percentage of those stored",
    ),
    ("max_group_removals", "groups removed"),
    (
        "max_group_removals_percent",
        "groups removed, as a percentage of those stored",
    ),
    ("max_membership_removals", "memberships removed"),
    (
        "max_membership_removals_percent",
        "memberships removed, as a percentage of those stored, in total and per group",
    ),
];

impl DeletionGuard {
    /// The limit a setting of [`GUARD_SETTINGS`] names.
    fn slot(&mut self, setting: &str) -> Option<&mut u64> {
        Some(match setting {
            "max_user_removals" => &mut self.users.max_count,
            "max_user_removals_percent" => &mut self.users.max_percent,
            "max_group_removals" => &mut self.groups.max_count,
            "max_group_removals_percent" => &mut self.groups.max_percent,
            "max_membership_removals" => &mut self.memberships.max_count,
            "max_membership_removals_percent" => &mut self.memberships.max_percent,
            _ => return None,
        })
    }

    /// The value of a setting of [`GUARD_SETTINGS`].
    pub fn get(&self, setting: &str) -> Option<u64> {
        let mut copy = *self;
        copy.slot(setting).map(|v| *v)
    }

    /// Sets one limit, checked: a percentage is 0 to 100.
    pub fn set(&mut self, setting: &str, value: u64) -> Result<(), ValidationError> {
        if setting.ends_with("_percent") && value > 100 {
            return Err(ValidationError::new(
                setting,
                format!("is a percentage: give 0 to 100 (not {value})"),
            ));
        }
        let slot = self.slot(setting).ok_or_else(|| {
            ValidationError::new(setting, "is not a deletion guard setting".to_owned())
        })?;
        *slot = value;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        let g = Limit::default();
        assert!(!g.trips(0, 0));
        assert!(!g.trips(3, 10), "a few leavers in a small tenant are fine");
        assert!(g.trips(10, 50), "20% of a tenant stages");
        assert!(!g.trips(10, 1000));
        assert!(g.trips(501, 1_000_000), "the absolute cap always applies");
        assert!(g.trips(1000, 1000), "an almost empty source stages");
        let open = Limit {
            max_count: u64::MAX,
            max_percent: 100,
        };
        assert!(!open.trips(u64::MAX, u64::MAX), "no overflow");
        // The stored count matters exactly where it can change the verdict.
        for affected in [0, 9, 10, 500, 501, 5000] {
            let matters = (0..=100_000u64)
                .step_by(1000)
                .any(|stored| g.trips(affected, stored) != g.trips(affected, 100_000));
            assert!(
                !matters || g.weighs_stored(affected),
                "{affected}: the count matters but would not be taken"
            );
        }
        assert!(g.weighs_stored(10) && g.weighs_stored(500));
        assert!(!g.weighs_stored(9) && !g.weighs_stored(501));
    }

    #[test]
    fn settings_name_each_limit_and_percentages_are_checked() {
        let mut g = DeletionGuard::default();
        for (i, (name, _)) in GUARD_SETTINGS.iter().enumerate() {
            g.set(name, i as u64).unwrap();
            assert_eq!(g.get(name), Some(i as u64));
        }
        assert_eq!(g.memberships.max_percent, 5);
        let e = g.set("max_user_removals_percent", 101).unwrap_err();
        assert!(e.to_string().contains("0 to 100"), "{e}");
    }
}
