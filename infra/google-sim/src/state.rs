//! The simulator's shared state, behind the `GoogleSim` handle and the HTTP
//! handlers.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono::{DateTime, Utc};

use crate::directory::Directory;
use crate::faults::Faults;
use crate::script::Script;
use crate::stats::Stats;

/// Locks ignoring poison: a panicking test thread must not wedge the
/// simulator for the others.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

/// What an issued access token stands for.
#[derive(Clone, Debug)]
pub(crate) struct AccessToken {
    /// Granted scopes, full URLs.
    pub scopes: BTreeSet<String>,
    /// The impersonated user's customer; `None` without `sub`.
    pub customer: Option<String>,
    /// The impersonated user's id.
    pub user_id: Option<String>,
    pub expires: DateTime<Utc>,
}

#[derive(Default)]
pub(crate) struct Inner {
    pub dir: RwLock<Directory>,
    pub tokens: Mutex<HashMap<String, AccessToken>>,
    pub faults: Mutex<Faults>,
    pub script: Mutex<Script>,
    pub stats: Mutex<Stats>,
    /// `http://127.0.0.1:PORT`, once serving.
    pub origin: OnceLock<String>,
}

impl Inner {
    pub fn origin(&self) -> String {
        self.origin
            .get()
            .cloned()
            .unwrap_or_else(|| "http://127.0.0.1:0".to_string())
    }

    pub fn token_url(&self) -> String {
        format!("{}/token", self.origin())
    }

    pub fn record(&self, route: &str) {
        lock(&self.stats).record(route);
    }
}
