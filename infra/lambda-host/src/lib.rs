//! A local Lambda service for the function binaries, for the end-to-end
//! tests and the start-up benchmark.
//!
//! A [`Sandbox`] is one execution environment: it serves the Lambda Runtime
//! API on a loopback port of its own, starts a binary with the environment
//! Lambda gives a `provided.al2023` function (plus the function's own
//! settings), hands it one event at a time on
//! `GET /2018-06-01/runtime/invocation/next` and returns what the binary
//! posts back. Between invocations the process stays up, as a warm Lambda
//! sandbox does (Lambda would freeze it; here it waits on its next poll).
//! Dropping the sandbox kills the process.
//!
//! [`events`] builds the events the functions receive: API Gateway HTTP API
//! requests with an IAM context, and SQS batches as the event-source
//! mapping sends them.

pub mod events;
mod runtime_api;
mod sandbox;

pub use runtime_api::Outcome;
pub use sandbox::{ACCOUNT, Function, HostError, Invocation, Sandbox};
