//! Injected faults. Every fault is driven by counters, so a test knows exactly
//! which request fails.
//!
//! Faults apply to Graph only, never to the token or consent endpoints: a
//! sync's failures worth rehearsing are Graph's, and keeping the token
//! endpoint clean lets a test reach Graph to be faulted there.
//!
//! * `drop_connection_next` and `server_error_next` act on HTTP requests
//!   before authentication (they model the network and the front door).
//!   A `$batch` counts as one HTTP request.
//! * `throttle_next` and `throttle_every` act on *logical* Graph requests:
//!   a plain request, or each request inside a `$batch`, where a throttled
//!   one shows as that inner response's 429.
//! * `page_latency` is the response time of every Graph response that is
//!   not a fault: none leaves sooner after its request arrived.
//! * `at` places a [`PageFault`] at chosen Graph HTTP requests, numbered
//!   from 0 from `set_faults` in the order they arrive (a `$batch` is one).

use std::collections::BTreeMap;
use std::time::Duration;

/// A fault for one Graph HTTP request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageFault {
    /// A 200 whose `Content-Length` promises the whole body, half of which
    /// is sent before the connection closes.
    CutBody,
    /// A 200 whose body is not JSON (a proxy's error page).
    NotJson,
    /// A 200 without its collection (`value`; a `$batch`'s `responses`),
    /// the rest kept, links included.
    NoCollection,
    /// The connection is closed with no answer.
    Reset,
    /// 503, with `Retry-After` seconds when given.
    Unavailable { retry_after: Option<u32> },
    /// 429 with `Retry-After` seconds.
    TooMany { retry_after: u32 },
}

/// Faults to inject; `Default` injects none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// The next N logical Graph requests get 429 with `Retry-After`.
    pub throttle_next: u32,
    /// Value of `Retry-After` on injected 429s (seconds).
    pub retry_after_secs: u32,
    /// Every Nth logical Graph request gets 429.
    pub throttle_every: Option<u32>,
    /// The next N Graph HTTP requests get 503, then 504, alternating.
    pub server_error_next: u32,
    /// The next N Graph HTTP requests: the connection is closed with no
    /// response.
    pub drop_connection_next: u32,
    /// The response time of every Graph response (the simulator's own work
    /// on it is part of it).
    pub page_latency: Duration,
    /// Send `x-ms-throttle-limit-percentage` on every Graph response. The
    /// value is a percentage; the header carries it as the fraction Graph
    /// sends (85 → `0.85`).
    pub throttle_percentage_header: Option<u32>,
    /// Override the random 3600..=5400 s access-token lifetime.
    pub token_lifetime_secs: Option<u32>,
    /// Answer 429 when a tenant's or the app's resource-unit budget is spent
    /// (units are always counted, for stats).
    pub enforce_resource_units: bool,
    /// Faults at Graph HTTP requests by number, from 0 at `set_faults`.
    pub at: BTreeMap<u64, PageFault>,
}

/// What the front door does with an HTTP request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrontDoor {
    Pass,
    Drop,
    ServerError(u16),
}

/// The faults in force and their counters.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    pub faults: Faults,
    /// Logical requests seen since the faults were set, for `throttle_every`.
    logical_seen: u64,
    /// Server errors sent since the faults were set, to alternate 503/504.
    server_errors_sent: u64,
    /// Graph HTTP requests seen since the faults were set, for `at`.
    http_seen: u64,
}

impl FaultState {
    pub fn set(&mut self, faults: Faults) {
        *self = FaultState {
            faults,
            ..FaultState::default()
        };
    }

    /// The scripted fault of the Graph HTTP request arriving now.
    pub fn scripted(&mut self) -> Option<PageFault> {
        let n = self.http_seen;
        self.http_seen += 1;
        self.faults.at.remove(&n)
    }

    /// Decides a Graph HTTP request's fate before it is authenticated.
    pub fn front_door(&mut self) -> FrontDoor {
        if self.faults.drop_connection_next > 0 {
            self.faults.drop_connection_next -= 1;
            return FrontDoor::Drop;
        }
        if self.faults.server_error_next > 0 {
            self.faults.server_error_next -= 1;
            let status = if self.server_errors_sent.is_multiple_of(2) {
                503
            } else {
                504
            };
            self.server_errors_sent += 1;
            return FrontDoor::ServerError(status);
        }
        FrontDoor::Pass
    }

    /// Whether a logical Graph request is throttled by an injected fault;
    /// returns the `Retry-After` to send.
    pub fn throttle(&mut self) -> Option<u32> {
        self.logical_seen += 1;
        if self.faults.throttle_next > 0 {
            self.faults.throttle_next -= 1;
            return Some(self.faults.retry_after_secs);
        }
        match self.faults.throttle_every {
            Some(n) if n > 0 && self.logical_seen.is_multiple_of(u64::from(n)) => {
                Some(self.faults.retry_after_secs)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_alternate_and_run_out() {
        let mut state = FaultState::default();
        state.set(Faults {
            server_error_next: 3,
            ..Faults::default()
        });
        assert_eq!(state.front_door(), FrontDoor::ServerError(503));
        assert_eq!(state.front_door(), FrontDoor::ServerError(504));
        assert_eq!(state.front_door(), FrontDoor::ServerError(503));
        assert_eq!(state.front_door(), FrontDoor::Pass);
    }

    #[test]
    fn drops_come_before_server_errors() {
        let mut state = FaultState::default();
        state.set(Faults {
            server_error_next: 1,
            drop_connection_next: 1,
            ..Faults::default()
        });
        assert_eq!(state.front_door(), FrontDoor::Drop);
        assert_eq!(state.front_door(), FrontDoor::ServerError(503));
    }

    #[test]
    fn throttle_every_counts_logical_requests() {
        let mut state = FaultState::default();
        state.set(Faults {
            throttle_every: Some(3),
            retry_after_secs: 2,
            ..Faults::default()
        });
        let hits: Vec<_> = (0..7).map(|_| state.throttle()).collect();
        assert_eq!(
            hits,
            vec![None, None, Some(2), None, None, Some(2), None],
            "every third request is throttled"
        );
    }
}
