//! How the functions report failures to Lambda: a handler's [`Failure`] as
//! a `Diagnostic` with its stable error type, and a failed start (a wrong
//! setting) to the Runtime API's `/runtime/init/error`, so that Lambda
//! names the setting instead of `Runtime.ExitError`.

use lambda_runtime::Diagnostic;

use super::failure::Failure;

/// The Runtime API's header for the error type.
const ERROR_TYPE_HEADER: &str = "Lambda-Runtime-Function-Error-Type";

impl From<Failure> for Diagnostic {
    fn from(f: Failure) -> Self {
        Diagnostic {
            error_type: f.kind.error_type().to_owned(),
            error_message: f.message,
        }
    }
}

/// The function's dependencies, or the reason they could not be built,
/// reported to the Runtime API before `main` returns it (and the process
/// exits).
pub async fn started<T, E: Into<Failure>>(built: Result<T, E>) -> Result<T, Failure> {
    let failure = match built {
        Ok(t) => return Ok(t),
        Err(e) => e.into(),
    };
    tracing::error!(error_type = failure.kind.error_type(), error = %failure, "the function cannot start");
    if let Err(e) = report_init_error(&failure).await {
        tracing::error!(error = %e, "could not report the failed start to the Runtime API");
    }
    Err(failure)
}

async fn report_init_error(failure: &Failure) -> Result<(), String> {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API")
        .map_err(|_| "AWS_LAMBDA_RUNTIME_API is not set (not running in Lambda)".to_owned())?;
    let diagnostic = Diagnostic::from(failure.clone());
    reqwest::Client::new()
        .post(format!("http://{api}/2018-06-01/runtime/init/error"))
        .header(ERROR_TYPE_HEADER, &diagnostic.error_type)
        .json(&diagnostic)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::failure::FailureKind;

    #[test]
    fn a_failure_keeps_its_type_and_message() {
        let d = Diagnostic::from(Failure::configuration("set DIRSYNC_TABLE"));
        assert_eq!(
            (d.error_type.as_str(), d.error_message.as_str()),
            ("Dirsync.Configuration", "set DIRSYNC_TABLE")
        );
        let body = serde_json::to_value(Diagnostic::from(Failure::new(
            FailureKind::Retryable,
            "throttled",
        )))
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"errorType": "Dirsync.Retryable", "errorMessage": "throttled"})
        );
    }
}
