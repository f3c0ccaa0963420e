//! Injected faults, driven by counters so a test knows exactly which request
//! fails.
//!
//! Faults apply to the Directory API only, never to `/token`.
//! * `server_error_next` acts on API requests before authentication (the
//!   front end is down): 503 `backendError`.
//! * `rate_limit_next`, `quota_next` and `too_many_next` act on authenticated
//!   API requests (Google's quotas are per user and project), in that order:
//!   first the 403 `userRateLimitExceeded`s, then the 403 `quotaExceeded`s,
//!   then the 429 `rateLimitExceeded`s.
//! * `page_latency` delays every successful API response.
//! * `cut_body_next` and `not_json_next` spoil successful API responses,
//!   after `spoil_after` of them have gone through untouched: a 200 whose
//!   body stops mid-transfer (the connection is dropped), then a 200 whose
//!   body is not JSON (a proxy's error page).
//!
//! * `at` places a fault at chosen API requests, and `quota_storm` answers
//!   every authenticated API request with a quota error for a span of time
//!   (see the `script` module).
//!
//! `set_faults` replaces the counters in force.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::script::{PageFault, QuotaStorm};

/// Faults to inject; `Default` injects none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// The next N authenticated API requests get 403 `userRateLimitExceeded`.
    pub rate_limit_next: u32,
    /// Then the next N get 403 `quotaExceeded`.
    pub quota_next: u32,
    /// Then the next N get 429 `rateLimitExceeded`.
    pub too_many_next: u32,
    /// The next N API requests (authenticated or not) get 503 `backendError`.
    pub server_error_next: u32,
    /// Added to every successful API response.
    pub page_latency: Duration,
    /// Successful responses that go through before any is spoilt.
    pub spoil_after: u32,
    /// Then the next N successful responses are cut mid-body.
    pub cut_body_next: u32,
    /// Then the next N are a 200 with a body that is not JSON.
    pub not_json_next: u32,
    /// Faults at API requests by number, counted from 0 from `set_faults`.
    pub at: BTreeMap<u64, PageFault>,
    /// Quota errors for every authenticated API request, for a while.
    pub quota_storm: Option<QuotaStorm>,
}

/// A fault decided for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Injected {
    UserRateLimit,
    Quota,
    TooMany,
    ServerError,
}

impl Faults {
    /// Front door, before authentication.
    pub(crate) fn take_front(&mut self) -> Option<Injected> {
        if self.server_error_next > 0 {
            self.server_error_next -= 1;
            return Some(Injected::ServerError);
        }
        None
    }

    /// For a successful response.
    pub(crate) fn take_spoil(&mut self) -> Option<PageFault> {
        if self.cut_body_next == 0 && self.not_json_next == 0 {
            return None;
        }
        if self.spoil_after > 0 {
            self.spoil_after -= 1;
            return None;
        }
        if self.cut_body_next > 0 {
            self.cut_body_next -= 1;
            return Some(PageFault::CutBody);
        }
        self.not_json_next -= 1;
        Some(PageFault::NotJson)
    }

    /// After authentication.
    pub(crate) fn take_quota(&mut self) -> Option<Injected> {
        if self.rate_limit_next > 0 {
            self.rate_limit_next -= 1;
            return Some(Injected::UserRateLimit);
        }
        if self.quota_next > 0 {
            self.quota_next -= 1;
            return Some(Injected::Quota);
        }
        if self.too_many_next > 0 {
            self.too_many_next -= 1;
            return Some(Injected::TooMany);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_faults_come_in_order_and_run_out() {
        let mut f = Faults {
            rate_limit_next: 1,
            quota_next: 1,
            too_many_next: 1,
            server_error_next: 1,
            ..Faults::default()
        };
        assert_eq!(f.take_front(), Some(Injected::ServerError));
        assert_eq!(f.take_front(), None);
        let seq: Vec<_> = (0..4).map(|_| f.take_quota()).collect();
        assert_eq!(
            seq,
            vec![
                Some(Injected::UserRateLimit),
                Some(Injected::Quota),
                Some(Injected::TooMany),
                None
            ]
        );
    }

    #[test]
    fn spoilt_responses_start_after_the_untouched_ones() {
        let mut f = Faults {
            spoil_after: 1,
            cut_body_next: 1,
            not_json_next: 1,
            ..Faults::default()
        };
        let seq: Vec<_> = (0..4).map(|_| f.take_spoil()).collect();
        assert_eq!(
            seq,
            vec![
                None,
                Some(PageFault::CutBody),
                Some(PageFault::NotJson),
                None
            ]
        );
    }
}
