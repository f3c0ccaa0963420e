//! dirsync's core: the domain, the ports the sync engine calls (state store,
//! directory sources, secrets, queues, time) and their adapters. Everything
//! here runs without AWS; the Lambda functions in `functions/` are thin
//! wrappers around it.

pub mod app;
pub mod auth;
pub mod clock;
pub mod domain;
pub mod engine;
pub mod queue;
pub mod secrets;
pub mod source;
pub mod store;
