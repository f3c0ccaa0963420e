//! Entra's token errors (`AADSTSnnnn`) in plain words with what to do.

use serde::{Deserialize, Serialize};

/// The error body of Entra's token endpoint, as `oauth2` reads it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct TokenErrorBody {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub error_description: String,
    #[serde(default)]
    pub error_codes: Vec<u64>,
}

impl TokenErrorBody {
    /// The AADSTS code, from `error_codes` or else the description's prefix.
    pub fn code(&self) -> Option<u64> {
        self.error_codes.first().copied().or_else(|| {
            let rest = self.error_description.strip_prefix("AADSTS")?;
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
    }

    /// The description's first line (Entra appends trace and correlation ids).
    pub fn summary(&self) -> &str {
        self.error_description
            .lines()
            .next()
            .unwrap_or(&self.error)
            .trim()
    }
}

impl std::fmt::Display for TokenErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.summary())
    }
}

impl oauth2::ErrorResponse for TokenErrorBody {}

/// Who is signing in, which decides the advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// The platform's multi-tenant app with its rotating certificate.
    ConsentApp,
    /// A customer's own app registration with a client secret.
    LegacyApp,
}

/// Codes whose meaning is "the certificate was not accepted": during a
/// rotation the previous certificate may still be the registered one.
pub const CERTIFICATE_REFUSED: [u64; 2] = [700027, 700024];

/// Codes a token request meets right after admin consent while Entra's
/// directory replicates the grant (Microsoft documents a delay of minutes):
/// the app is not found in the tenant yet (700016), or the grant is not
/// seen yet (65001). Past that delay they mean what they say.
pub const GRANT_NOT_YET_SEEN: [u64; 2] = [700016, 65001];

/// Codes of an authorization code that cannot be redeemed: already
/// redeemed (54005) or expired (70008). The request that redeemed it, if
/// any, decides the sign-in.
pub const CODE_SPENT: [u64; 2] = [54005, 70008];

/// Plain advice for an AADSTS code.
pub fn advice(code: Option<u64>, signer: Signer, tenant: &str) -> String {
    let consent = "an administrator of the tenant must grant admin consent again (Connectors → Start consent)";
    match (code, signer) {
        (Some(700027), Signer::ConsentApp) => "Entra does not accept the platform's certificate (AADSTS700027: not registered on the app, or signature invalid). \
             If a certificate rotation is in progress it completes on its next attempt; otherwise an operator must run \
             `dirsync cert bootstrap` and register the certificate on the app."
            .into(),
        (Some(700027), Signer::LegacyApp) => {
            "Entra refused the app's credentials (AADSTS700027). Check the key configured on the app registration.".into()
        }
        (Some(700024), _) => "Entra says the sign-in assertion is outside its valid time (AADSTS700024): check this system's clock.".into(),
        (Some(7000215), _) => "The client secret (key) is wrong (AADSTS7000215). In the Azure portal open the app registration → \
             Certificates & secrets, create a new client secret, and update the connector's secret with its Value (not its ID)."
            .into(),
        (Some(7000222), _) => "The client secret (key) has expired (AADSTS7000222). Create a new client secret in the app registration \
             and update the connector — or migrate the connector to the consent connector, which needs no secret."
            .into(),
        (Some(700016), Signer::ConsentApp) => format!(
            "The platform's app is not present in tenant {tenant} (AADSTS700016): consent was never granted or has been removed; {consent}."
        ),
        (Some(700016), Signer::LegacyApp) => format!(
            "The application (client) ID was not found in tenant {tenant} (AADSTS700016): check the client ID and the tenant domain of the connector."
        ),
        (Some(65001), _) | (Some(65004), _) => format!("Consent has not been granted in tenant {tenant} (AADSTS{}); {consent}.", code.unwrap_or(65001)),
        (Some(90002), _) | (Some(900023), _) => format!(
            "Tenant {tenant} was not found (AADSTS{}): check the tenant's domain name or ID.",
            code.unwrap_or(90002)
        ),
        (Some(7000112), _) => format!(
            "The application is disabled in tenant {tenant} (AADSTS7000112): an administrator must enable it under Enterprise applications → Properties."
        ),
        (Some(70011), _) => "Entra refused the requested scope (AADSTS70011); dirsync asks for the `.default` scope of the connector's cloud's Graph \
             (https://graph.microsoft.com/.default in the global cloud) — report this as a bug."
            .into(),
        (Some(500011), _) => format!(
            "Entra does not know the Graph that dirsync asked a token for in tenant {tenant} (AADSTS500011): each cloud has its own Graph, \
             so the connector's cloud does not match the tenant's. Set the connector's cloud to the tenant's (global, us-gov for GCC High, \
             us-gov-dod for DoD, china for 21Vianet), or fix its graph_url."
        ),
        (Some(54005), _) | (Some(70008), _) => format!(
            "This sign-in was already used or has expired (AADSTS{}): a sign-in is accepted once, within minutes.",
            code.unwrap_or(70008)
        ),
        (Some(c), _) => format!("Entra refused the sign-in (AADSTS{c})."),
        (None, _) => "Entra refused the sign-in.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_come_from_the_list_or_the_description() {
        let a: TokenErrorBody = serde_json::from_str(
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x","error_codes":[7000215]}"#,
        )
        .unwrap();
        assert_eq!(a.code(), Some(7000215));
        assert_eq!(
            a.summary(),
            "AADSTS7000215: Invalid client secret provided."
        );
        let b = TokenErrorBody {
            error_description: "AADSTS90002: Tenant 'x' not found.".into(),
            ..Default::default()
        };
        assert_eq!(b.code(), Some(90002));
    }

    #[test]
    fn advice_says_what_to_do() {
        assert!(advice(Some(7000222), Signer::LegacyApp, "t").contains("expired"));
        assert!(advice(Some(700016), Signer::ConsentApp, "contoso").contains("admin consent"));
        assert!(advice(Some(700027), Signer::ConsentApp, "t").contains("cert bootstrap"));
        assert!(advice(Some(12345), Signer::ConsentApp, "t").contains("AADSTS12345"));
        assert!(advice(Some(500011), Signer::LegacyApp, "t").contains("connector's cloud"));
        assert!(advice(Some(70011), Signer::LegacyApp, "t").contains("connector's cloud"));
    }
}
