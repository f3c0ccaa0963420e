//! One execution environment: a function binary run as Lambda runs it, fed
//! through its own Runtime API.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use uuid::Uuid;

use crate::runtime_api::{Offer, Outcome, Report, RuntimeApi};

/// The AWS account the sandboxes pretend to run in (in ARNs only).
pub const ACCOUNT: &str = "123456789012";

/// How much of a binary's output an error shows.
const TAIL_BYTES: u64 = 3000;

/// A function as deployed: its binary and its configuration.
#[derive(Debug, Clone)]
pub struct Function {
    pub binary: PathBuf,
    /// The Lambda function name (`AWS_LAMBDA_FUNCTION_NAME`, the ARN).
    pub name: String,
    pub memory_mb: u32,
    /// The function's timeout: each invocation's deadline.
    pub timeout: Duration,
    /// `AWS_REGION`.
    pub region: String,
    /// The function's own settings (the template's variables, endpoints),
    /// set after Lambda's own and overriding them.
    pub env: Vec<(String, String)>,
}

impl Function {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:lambda:{}:{ACCOUNT}:function:{}",
            self.region, self.name
        )
    }

    /// What Lambda sets for a `provided.al2023` function, then the
    /// function's own settings. Nothing else reaches the process: the
    /// caller's environment (its AWS settings above all) stays out.
    pub fn environment(&self, runtime_api: &str) -> Vec<(String, String)> {
        let name = &self.name;
        let lambda = [
            ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_owned()),
            ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                self.memory_mb.to_string(),
            ),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/03/02/[$LATEST]0123456789abcdef".to_owned(),
            ),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
            ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".to_owned()),
            ("AWS_REGION", self.region.clone()),
            ("AWS_DEFAULT_REGION", self.region.clone()),
            // The execution role's session; the emulators accept any.
            ("AWS_ACCESS_KEY_ID", "ASIALOCALSANDBOX".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "local-sandbox-secret".to_owned()),
            ("AWS_SESSION_TOKEN", "local-sandbox-session".to_owned()),
            ("_HANDLER", "bootstrap".to_owned()),
            ("TZ", ":UTC".to_owned()),
            ("LANG", "en_US.UTF-8".to_owned()),
            ("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned()),
        ];
        lambda
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .chain(self.env.iter().cloned())
            .collect()
    }
}

/// What went wrong running a function. Each one that involves the binary
/// carries the end of its output.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("could not serve the Runtime API on loopback: {0}")]
    Serve(std::io::Error),
    #[error("could not start {binary}: {error}")]
    Spawn {
        binary: String,
        error: std::io::Error,
    },
    #[error("{function} exited ({status}) {when}; its output ends:\n{tail}")]
    Exited {
        function: String,
        status: String,
        when: &'static str,
        tail: String,
    },
    #[error("{function} gave no answer within {wait:?} {when}; its output ends:\n{tail}")]
    NoAnswer {
        function: String,
        wait: Duration,
        when: &'static str,
        tail: String,
    },
    #[error("{function} failed to initialise ({error_type}): {body}; its output ends:\n{tail}")]
    Init {
        function: String,
        error_type: String,
        body: String,
        tail: String,
    },
    #[error("{function} broke the Runtime API protocol: {what}; its output ends:\n{tail}")]
    Protocol {
        function: String,
        what: String,
        tail: String,
    },
}

/// One invocation's result.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub outcome: Outcome,
    /// When the answer had arrived in full.
    pub answered_at: Instant,
}

/// A running function binary and its Runtime API.
pub struct Sandbox {
    api: RuntimeApi,
    child: tokio::process::Child,
    output: tempfile::NamedTempFile,
    name: String,
    timeout: Duration,
    started: Instant,
    first_poll: Option<Instant>,
}

impl Sandbox {
    /// Starts `function`'s binary; it initialises and polls for an event
    /// while the first [`invoke`](Self::invoke) is prepared.
    pub async fn start(function: &Function) -> Result<Sandbox, HostError> {
        let api = RuntimeApi::serve(function.arn())
            .await
            .map_err(HostError::Serve)?;
        let spawn_error = |error| HostError::Spawn {
            binary: function.binary.display().to_string(),
            error,
        };
        let output = tempfile::NamedTempFile::new().map_err(spawn_error)?;
        let stdout = output.reopen().map_err(spawn_error)?;
        let stderr = output.reopen().map_err(spawn_error)?;
        let mut command = tokio::process::Command::new(&function.binary);
        command
            .env_clear()
            .envs(function.environment(&api.address))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);
        let started = Instant::now();
        let child = command.spawn().map_err(spawn_error)?;
        Ok(Sandbox {
            api,
            child,
            output,
            name: function.name.clone(),
            timeout: function.timeout,
            started,
            first_poll: None,
        })
    }

    /// Hands `event` to the binary and waits up to `wait` for its answer.
    pub async fn invoke(&mut self, event: &[u8], wait: Duration) -> Result<Invocation, HostError> {
        let request_id = Uuid::new_v4().to_string();
        let offer = Offer {
            request_id: request_id.clone(),
            event: Bytes::copy_from_slice(event),
            deadline: SystemTime::now() + self.timeout,
        };
        if self.api.offers.send(offer).is_err() {
            return Err(self.protocol("the Runtime API has stopped".into()));
        }
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                // What the binary reported comes first: a failed start is
                // posted to /init/error just before the process exits.
                biased;
                report = self.api.reports.recv() => match report {
                    Some(Report::Polled(at)) => {
                        self.first_poll.get_or_insert(at);
                    }
                    Some(Report::Answered { request_id: id, at, outcome }) if id == request_id => {
                        return Ok(Invocation { outcome, answered_at: at });
                    }
                    Some(Report::Answered { request_id: id, .. }) => {
                        return Err(self.protocol(format!("an answer for {id}, not for {request_id}")));
                    }
                    Some(Report::InitError { error_type, body }) => return Err(HostError::Init {
                        function: self.name.clone(),
                        error_type: error_type.unwrap_or_default(),
                        body: String::from_utf8_lossy(&body).into_owned(),
                        tail: self.output_tail(),
                    }),
                    Some(Report::Unexpected(what)) => return Err(self.protocol(what)),
                    None => return Err(self.protocol("the Runtime API has stopped".into())),
                },
                status = self.child.wait() => return Err(HostError::Exited {
                    function: self.name.clone(),
                    status: status.map_or_else(|e| e.to_string(), |s| s.to_string()),
                    when: self.when(),
                    tail: self.output_tail(),
                }),
                _ = &mut deadline => return Err(HostError::NoAnswer {
                    function: self.name.clone(),
                    wait,
                    when: self.when(),
                    tail: self.output_tail(),
                }),
            }
        }
    }

    fn when(&self) -> &'static str {
        if self.first_poll.is_some() {
            "while handling the event"
        } else {
            "before it asked for an event"
        }
    }

    fn protocol(&self, what: String) -> HostError {
        HostError::Protocol {
            function: self.name.clone(),
            what,
            tail: self.output_tail(),
        }
    }

    /// When the process was spawned.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// When the runtime first asked for an event (its initialisation done),
    /// once an invocation has seen it.
    pub fn first_poll(&self) -> Option<Instant> {
        self.first_poll
    }

    /// Everything the binary wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        self.read_output(0)
    }

    /// The last few kilobytes of the binary's output.
    pub fn output_tail(&self) -> String {
        let len = self.output.as_file().metadata().map_or(0, |m| m.len());
        self.read_output(len.saturating_sub(TAIL_BYTES))
    }

    fn read_output(&self, from: u64) -> String {
        let mut text = Vec::new();
        let read = self.output.reopen().and_then(|mut f| {
            f.seek(SeekFrom::Start(from))?;
            f.read_to_end(&mut text)
        });
        match read {
            Ok(_) => String::from_utf8_lossy(&text).trim().to_owned(),
            Err(e) => format!("(its output could not be read: {e})"),
        }
    }

    /// Kills the process and waits for it to end (dropping the sandbox
    /// kills it without waiting).
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
