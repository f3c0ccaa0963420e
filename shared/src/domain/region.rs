//! The platform regions an account can live in. Each region's sync windows are
//! at 08:00, 13:00 and 23:00 local time in its timezone (seed 002).

use std::fmt;
use std::str::FromStr;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::ValidationError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Region {
    Europe,
    NorthAmerica,
    SouthAfrica,
    Australia,
}

impl Region {
    pub const ALL: [Region; 4] = [
        Region::Europe,
        Region::NorthAmerica,
        Region::SouthAfrica,
        Region::Australia,
    ];

    /// The short code used in configuration, keys and schedules.
    pub fn code(self) -> &'static str {
        match self {
            Region::Europe => "eu",
            Region::NorthAmerica => "na",
            Region::SouthAfrica => "za",
            Region::Australia => "au",
        }
    }

    /// The IANA zone the region's sync windows are expressed in. Europe runs on
    /// UK time and North America on US Eastern time, as the seed says (GMT /
    /// EST), including their daylight-saving shifts.
    pub fn timezone(self) -> Tz {
        match self {
            Region::Europe => chrono_tz::Europe::London,
            Region::NorthAmerica => chrono_tz::America::New_York,
            Region::SouthAfrica => chrono_tz::Africa::Johannesburg,
            Region::Australia => chrono_tz::Australia::Sydney,
        }
    }

    /// Local hours of the three daily sync windows.
    pub const WINDOW_HOURS: [u32; 3] = [8, 13, 23];
}

impl FromStr for Region {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace(['_', ' '], "-");
        Region::ALL
            .into_iter()
            .find(|r| {
                r.code() == wanted || r.to_string().to_ascii_lowercase().replace(' ', "-") == wanted
            })
            .ok_or_else(|| {
                let known: Vec<String> = Region::ALL
                    .iter()
                    .map(|r| format!("{} ({r})", r.code()))
                    .collect();
                ValidationError::new(
                    "region",
                    format!("{s:?} is not a region; use one of {}", known.join(", ")),
                )
            })
    }
}

impl TryFrom<String> for Region {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Region> for String {
    fn from(r: Region) -> String {
        r.code().to_owned()
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Region::Europe => "Europe",
            Region::NorthAmerica => "North America",
            Region::SouthAfrica => "South Africa",
            Region::Australia => "Australia",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_codes_and_names_and_refuses_unknown_with_the_list() {
        assert_eq!("eu".parse::<Region>().unwrap(), Region::Europe);
        assert_eq!(
            "North America".parse::<Region>().unwrap(),
            Region::NorthAmerica
        );
        assert_eq!(
            "south_africa".parse::<Region>().unwrap(),
            Region::SouthAfrica
        );
        let err = "mars".parse::<Region>().unwrap_err();
        assert!(err.problem.contains("au (Australia)"), "{err}");
    }

    #[test]
    fn each_region_has_its_zone() {
        assert_eq!(Region::NorthAmerica.timezone().name(), "America/New_York");
        assert_eq!(Region::Australia.timezone().name(), "Australia/Sydney");
        for r in Region::ALL {
            assert_eq!(r.code().parse::<Region>().unwrap(), r);
        }
    }
}
