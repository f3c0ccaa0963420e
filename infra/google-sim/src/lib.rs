//! A Google Workspace Admin SDK Directory API simulator served over HTTP on
//! loopback, for dirsync's tests.
//!
//! It follows Google's documented behaviour (see `shared/DESIGN.md` §4 and
//! this crate's README): service account JWTs verified for real at `/token`
//! with domain-wide delegation, `users.list`, `groups.list` and
//! `members.list` with paging and Google's JSON and error shapes, and
//! deterministic faults (403 `userRateLimitExceeded` / `quotaExceeded`, 429,
//! 503, latency).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use dirsync_google_sim::GoogleSim;
//! let sim = GoogleSim::start().await?;
//! let customer = sim.add_customer("example.test", "admin@example.test");
//! let key_json = sim.add_service_account("sync@dirsync.iam.gserviceaccount.com");
//! let key: serde_json::Value = serde_json::from_str(&key_json).unwrap();
//! sim.grant_delegation(&customer, key["client_id"].as_str().unwrap(),
//!     &["admin.directory.user.readonly", "admin.directory.group.readonly"]);
//! sim.generate(&customer, 1_000, 50, 42);
//! # Ok(()) }
//! ```

mod api;
mod directory;
mod errors;
mod faults;
mod generate;
mod ids;
mod keys;
mod model;
mod script;
mod server;
mod sim;
mod state;
mod stats;
mod token_endpoint;

pub use faults::Faults;
pub use model::{MemberRole, MemberType, SimGroup, SimUser, Snapshot, SnapshotMember};
pub use script::{PageFault, QuotaStorm};
pub use sim::GoogleSim;
pub use stats::Stats;
