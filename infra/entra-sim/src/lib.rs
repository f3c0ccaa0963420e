//! An Entra ID + Microsoft Graph simulator served over HTTP on loopback, for
//! dirsync's tests, demo and benchmark.
//!
//! It behaves like the real services as Microsoft documents them: the client
//! credentials grant with certificate assertions (verified for real) or
//! secrets, admin consent, OpenID Connect sign-in (authorization code
//! flow, `id_token`), Graph listings with `$select`/`$top`/paging,
//! `users/delta` and `groups/delta` with `members@delta`, `$batch`, resource
//! units and throttling, `addKey`/`removeKey`, and AADSTS / Graph errors.
//! Faults (429, 5xx, dropped connections, latency) are injected
//! deterministically.
//!
//! URL layout, for `let sim = EntraSim::start().await?`:
//! * token: `{sim.authority_url()}/{tenant}/oauth2/v2.0/token`
//! * admin consent: `{sim.authority_url()}/{tenant|organizations}/v2.0/adminconsent`
//! * OpenID Connect sign-in: `{sim.authority_url()}/{tenant}/oauth2/v2.0/authorize`
//!   (authorization code flow; the code is redeemed at the token endpoint
//!   for an `id_token`)
//! * Graph: `{sim.graph_url()}/v1.0/...`

mod access_token;
mod apps;
mod assertion;
mod authorize;
mod certs;
mod consent;
mod delta;
mod directory;
mod error;
mod faults;
mod generate;
mod graph;
mod model;
mod pages;
mod props;
mod server;
mod sim;
mod state;
mod stats;
mod throttle;
mod token;
mod token_endpoint;

pub use authorize::{GLOBAL_ADMINISTRATOR, USER_ROLE};
pub use delta::{DEFAULT_DELTA_PAGE_SIZE, MEMBER_REFS_PER_PAGE};
pub use directory::DirectoryError;
pub use error::CertError;
pub use faults::{Faults, PageFault};
pub use generate::GenSpec;
pub use model::{
    ConsentDecision, DirectorySnapshot, KeyCredentialInfo, MemberKind, Membership, MultiTenantApp,
    SimContact, SimGroup, SimUser, TenantSpec, UserType,
};
pub use sim::{CONSENT_ROLES, EntraSim};
pub use stats::SimStats;
