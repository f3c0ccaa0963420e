//! The callback's pages, and how each ending of a consent is shown and
//! audited.

use super::*;

/// Headers of every callback page (a redirect to the sign-in adds
/// `Location`).
pub const PAGE_HEADERS: [(&str, &str); 5] = [
    ("content-type", "text/html; charset=utf-8"),
    ("cache-control", "no-store"),
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackPage {
    pub status: u16,
    pub html: String,
    /// Where a `302` sends the browser: the sign-in that proves the
    /// administrator belongs to the tenant.
    pub location: Option<String>,
    /// What happened, for logs and tests.
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Granted,
    Migrated,
    Declined,
    Refused,
    /// Entra has not confirmed the grant yet; the page reloads itself.
    Pending,
    /// The grant is confirmed; the administrator is sent to sign in.
    SignIn,
    Failed,
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn page(
    status: u16,
    outcome: Outcome,
    title: &str,
    paragraphs: &[String],
) -> CallbackPage {
    let body: String = paragraphs
        .iter()
        .map(|p| format!("<p>{}</p>", escape(p)))
        .collect();
    // Without a URL the refresh reloads this same callback address.
    let reload = if outcome == Outcome::Pending {
        format!("<meta http-equiv=\"refresh\" content=\"{RELOAD_SECONDS}\">")
    } else {
        String::new()
    };
    CallbackPage {
        status,
        outcome,
        location: None,
        html: format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">{reload}<title>{t}</title>\
             <style>body{{font-family:sans-serif;max-width:40em;margin:3em auto}}</style></head>\
             <body><h1>{t}</h1>{body}</body></html>",
            t = escape(title)
        ),
    }
}

pub(super) const STATE_USED: &str = "This consent link has expired or was already used.";
pub(super) const SERVICE_DOWN: &str = "The service is unavailable.";
pub(super) const OTHER_ACCOUNT: &str =
    "This tenant is already connected to another account of the platform; contact support.";
pub(super) const NO_PROOF_AWAITED: &str = "This sign-in answers no consent that awaits one: start the consent again from the admin console.";

/// How a callback ends, decided before it is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ending {
    /// The grant is recorded (the commit spent the state).
    Recorded {
        outcome: Outcome,
        lines: Vec<String>,
    },
    /// The administrator declined, or Entra sent an error instead of a grant.
    Declined(Vec<String>),
    /// A check did not pass: for good, and nothing was changed.
    Refused(String),
    /// Entra has not confirmed a fresh grant yet: the state is kept.
    Pending(String),
    /// The grant is confirmed: the administrator signs in at `url` to prove
    /// they belong to `tenant` (the state, now awaiting it, is kept).
    SignIn { url: String, tenant: Uuid },
    /// This request is refused, but it does not decide the consent: an
    /// authorization code already redeemed belongs to the request that
    /// redeemed it, which spends the state itself.
    Rejected(String),
    /// The grant could not be confirmed or saved, for good.
    Failed(String),
    /// The store or the sign-in service failed: nothing was decided and the
    /// state is kept.
    Unavailable(String),
}

impl Ending {
    /// Whether the consent is over, its state to be spent.
    pub(super) fn is_final(&self) -> bool {
        !matches!(
            self,
            Ending::Pending(_)
                | Ending::Unavailable(_)
                | Ending::SignIn { .. }
                | Ending::Rejected(_)
        )
    }

    pub(super) fn audit(&self) -> (AuditOutcome, String) {
        match self {
            Ending::Recorded { lines, .. } => (AuditOutcome::Succeeded, lines[0].clone()),
            Ending::Declined(lines) => (AuditOutcome::Declined, lines[1].clone()),
            Ending::Refused(why) | Ending::Rejected(why) => (AuditOutcome::Refused, why.clone()),
            Ending::Pending(why) => (AuditOutcome::Pending, why.clone()),
            Ending::SignIn { tenant, .. } => (
                AuditOutcome::Pending,
                format!(
                    "The grant in tenant {tenant} is confirmed; the sign-in of an administrator of that tenant is awaited."
                ),
            ),
            Ending::Failed(why) | Ending::Unavailable(why) => (AuditOutcome::Failed, why.clone()),
        }
    }

    pub(super) fn page(&self) -> CallbackPage {
        let again = "Nothing was changed. Start the consent again from the admin console.";
        match self {
            Ending::Recorded { outcome, lines } => page(200, *outcome, "Consent recorded", lines),
            Ending::Declined(lines) => page(200, Outcome::Declined, "Consent not granted", lines),
            Ending::Refused(why) | Ending::Rejected(why) => page(
                400,
                Outcome::Refused,
                "Consent could not be recorded",
                &[why.clone(), again.into()],
            ),
            Ending::SignIn { url, .. } => CallbackPage {
                location: Some(url.clone()),
                ..page(
                    302,
                    Outcome::SignIn,
                    "Sign in to confirm the consent",
                    &["The grant is confirmed. Sign in as an administrator of the tenant to connect it.".into()],
                )
            },
            Ending::Pending(why) => page(
                200,
                Outcome::Pending,
                "Consent is being confirmed",
                &[
                    why.clone(),
                    format!(
                        "This page checks again every {RELOAD_SECONDS} seconds: keep it open. The connector becomes \
                         active as soon as Entra confirms the grant, and the page then says so. Closed, the same \
                         link works for a few more minutes; after that, start the consent again."
                    ),
                ],
            ),
            Ending::Failed(why) => page(
                502,
                Outcome::Failed,
                "Consent could not be confirmed",
                &[why.clone(), again.into()],
            ),
            Ending::Unavailable(why) => page(
                503,
                Outcome::Failed,
                "Consent could not be confirmed yet",
                &[
                    why.clone(),
                    "Nothing was changed and this consent link still works: reload this page in a minute."
                        .into(),
                ],
            ),
        }
    }
}

/// A store failure before anything was decided.
pub(super) fn store_down(e: StoreError) -> Ending {
    tracing::error!(error = %e, "consent callback: the store failed");
    Ending::Unavailable(SERVICE_DOWN.into())
}
