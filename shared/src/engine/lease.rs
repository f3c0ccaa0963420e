//! The lease a run holds on its connector, kept alive while the run works.
//!
//! A run renews its lease on a heartbeat, not only after a page: a long
//! read or a long end of run would otherwise let the lease lapse, and a
//! second run take the connector while the first still writes. Before each
//! write the run checks that the lease is still its own; once the heartbeat
//! finds it taken, or its last renewal has run out, the run stops.

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

use crate::domain::Lease;
use crate::store::{StateStore, StoreError};

use super::EngineError;

pub struct LeaseKeeper {
    lease: Lease,
    state: Mutex<Held>,
}

struct Held {
    /// The lease is ours until then at least (its last renewal's expiry).
    until: DateTime<Utc>,
    /// Another run holds it: who, and until when.
    lost: Option<(String, DateTime<Utc>)>,
}

impl LeaseKeeper {
    pub fn new(lease: Lease) -> Self {
        let until = lease.expires_at;
        Self {
            lease,
            state: Mutex::new(Held { until, lost: None }),
        }
    }

    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Ok while the run may write; the error stops it before its next write.
    pub fn check(&self, now: DateTime<Utc>) -> Result<(), EngineError> {
        let held = self.held();
        match &held.lost {
            Some((holder, until)) => Err(EngineError::LeaseLost {
                holder: holder.clone(),
                until: *until,
            }),
            None if now >= held.until => Err(EngineError::LeaseLost {
                holder: "(unknown: this run's lease ran out before it could renew it)".into(),
                until: held.until,
            }),
            None => Ok(()),
        }
    }

    /// Renews the lease every `every` until it is lost; never returns.
    pub async fn heartbeat(
        &self,
        store: &StateStore,
        ttl: Duration,
        every: std::time::Duration,
    ) -> std::convert::Infallible {
        loop {
            tokio::time::sleep(every).await;
            let asked = store.now();
            match store.renew_lease(&self.lease, ttl).await {
                Ok(_) => self.held().until = asked + ttl,
                Err(StoreError::LeaseHeld { holder, until, .. }) => {
                    tracing::warn!(connector = %self.lease.connector, %holder, "the run's lease was taken over");
                    self.held().lost = Some((holder, until));
                    return std::future::pending().await;
                }
                // The next beat tries again; the expiry check stops writes
                // should the lease run out meanwhile.
                Err(e) => {
                    tracing::warn!(connector = %self.lease.connector, error = %e, "could not renew the run's lease")
                }
            }
        }
    }
}
