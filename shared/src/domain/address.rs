//! Email addresses, domain names and the connector's email domains filter.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// A DNS domain name, lower-cased. At least two labels, each 1–63 characters
/// of letters, digits and inner hyphens (IDNs in their `xn--` form).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DomainName(String);

impl DomainName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DomainName {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| ValidationError::new("domain", format!("{s:?} {why}"));
        let lower = s.to_ascii_lowercase();
        if lower.len() > 253 {
            return Err(bad("is longer than 253 characters"));
        }
        let labels: Vec<&str> = lower.split('.').collect();
        if labels.len() < 2 {
            return Err(bad("is not a domain name (expected like example.com)"));
        }
        for label in &labels {
            if label.is_empty() || label.len() > 63 {
                return Err(bad("has an empty or over-long part between dots"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(bad("has a part that starts or ends with '-'"));
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
            {
                return Err(bad(&format!(
                    "contains {c:?}; a domain has only letters, digits, '-' and dots"
                )));
            }
        }
        Ok(Self(lower))
    }
}

impl TryFrom<String> for DomainName {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<DomainName> for String {
    fn from(d: DomainName) -> String {
        d.0
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email address, lower-cased so that look-ups and ownership are
/// case-insensitive (directories are inconsistent about case, mail routing
/// is not case-sensitive in practice).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        // Construction guarantees exactly one '@' with a domain after it.
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

impl FromStr for EmailAddress {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = |why: String| ValidationError::new("email", format!("{s:?} {why}"));
        let Some((local, domain)) = s.rsplit_once('@') else {
            return Err(bad("is not an email address (no '@')".into()));
        };
        if local.is_empty() || local.len() > 64 {
            return Err(bad("has an empty or over-long part before '@'".into()));
        }
        if let Some(c) = local.chars().find(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '@' | '<' | '>' | ',' | ';')
        }) {
            return Err(bad(format!("contains {c:?} before the '@'")));
        }
        let domain: DomainName = domain
            .parse()
            .map_err(|e: ValidationError| bad(format!("has a bad domain: {}", e.problem)))?;
        Ok(Self(format!("{}@{}", local.to_lowercase(), domain)))
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<EmailAddress> for String {
    fn from(e: EmailAddress) -> String {
        e.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The "Optional email domains filter" (seeds 002/003): comma-separated
/// domains, no spaces. Empty means every domain is in scope. Several connectors
/// of one account can each be dedicated to some domains.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DomainFilter(Vec<DomainName>);

impl DomainFilter {
    pub fn all() -> Self {
        Self::default()
    }

    pub fn is_all(&self) -> bool {
        self.0.is_empty()
    }

    pub fn domains(&self) -> &[DomainName] {
        &self.0
    }

    /// Whether an address's domain is one of the listed domains (exactly; a
    /// subdomain must be listed on its own, as the seeds' filter does).
    pub fn admits(&self, address: &EmailAddress) -> bool {
        self.is_all() || self.0.iter().any(|d| d.as_str() == address.domain())
    }
}

impl FromStr for DomainFilter {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Ok(Self::all());
        }
        if s.chars().any(char::is_whitespace) {
            return Err(ValidationError::new(
                "email_domains",
                format!(
                    "{s:?} contains spaces; list the domains separated by commas only, like \"{}\"",
                    s.split(',')
                        .map(str::trim)
                        .filter(|d| !d.is_empty())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            ));
        }
        let mut domains = Vec::new();
        for part in s.split(',') {
            if part.is_empty() {
                return Err(ValidationError::new(
                    "email_domains",
                    format!("{s:?} has an empty entry; remove the extra comma"),
                ));
            }
            let d: DomainName = part
                .parse()
                .map_err(|e: ValidationError| ValidationError::new("email_domains", e.problem))?;
            if !domains.contains(&d) {
                domains.push(d);
            }
        }
        Ok(Self(domains))
    }
}

impl TryFrom<String> for DomainFilter {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<DomainFilter> for String {
    fn from(f: DomainFilter) -> String {
        f.to_string()
    }
}

impl fmt::Display for DomainFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<&str> = self.0.iter().map(DomainName::as_str).collect();
        f.write_str(&list.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_lower_cased_and_checked() {
        let a: EmailAddress = " Alice.Smith@Contoso.COM ".parse().unwrap();
        assert_eq!(a.as_str(), "alice.smith@contoso.com");
        assert_eq!(a.domain(), "contoso.com");
        assert!("alice".parse::<EmailAddress>().is_err());
        assert!("alice@localhost".parse::<EmailAddress>().is_err());
        assert!("al ice@contoso.com".parse::<EmailAddress>().is_err());
        assert!("@contoso.com".parse::<EmailAddress>().is_err());
    }

    #[test]
    fn domain_filter_refuses_spaces_and_suggests_the_fixed_list() {
        let err = "contoso.com, fabrikam.com"
            .parse::<DomainFilter>()
            .unwrap_err();
        assert_eq!(err.field, "email_domains");
        assert!(
            err.problem.contains("\"contoso.com,fabrikam.com\""),
            "{err}"
        );
        assert!("contoso.com,,x.org".parse::<DomainFilter>().is_err());
        assert!("contoso.com,not_a_domain".parse::<DomainFilter>().is_err());
    }

    #[test]
    fn domain_filter_admits_listed_domains_only() {
        let f: DomainFilter = "Contoso.com,fabrikam.com".parse().unwrap();
        assert_eq!(f.to_string(), "contoso.com,fabrikam.com");
        assert!(f.admits(&"a@CONTOSO.com".parse().unwrap()));
        assert!(!f.admits(&"a@sub.contoso.com".parse().unwrap()));
        assert!(DomainFilter::all().admits(&"a@any.org".parse().unwrap()));
        assert!("".parse::<DomainFilter>().unwrap().is_all());
    }
}
