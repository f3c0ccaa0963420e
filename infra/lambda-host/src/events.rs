//! The events Lambda's triggers send the functions, shaped as AWS documents
//! them: API Gateway HTTP API requests (payload format 2.0) and SQS
//! batches from the event-source mapping.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::ACCOUNT;

/// An HTTP request to an API Gateway HTTP API.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    /// As sent, percent-encoding and all (`rawPath`).
    pub path: &'a str,
    /// Without the `?` (`rawQueryString`).
    pub query: &'a str,
    pub body: Option<String>,
    /// The IAM user or role ARN that signed the request (an IAM-authorised
    /// route); `None` for a public route.
    pub iam_caller: Option<&'a str>,
}

/// The event API Gateway hands the function for `request` (payload 2.0).
pub fn http_api(request: &HttpRequest) -> Value {
    let host = "api0123456.execute-api.eu-west-2.amazonaws.com";
    let mut context = json!({
        "accountId": ACCOUNT,
        "apiId": "api0123456",
        "domainName": host,
        "domainPrefix": "api0123456",
        "http": {
            "method": request.method,
            "path": request.path,
            "protocol": "HTTP/1.1",
            "sourceIp": "192.0.2.1",
            "userAgent": "dirsync-lambda-host"
        },
        "requestId": uuid::Uuid::new_v4().to_string(),
        "routeKey": "$default",
        "stage": "$default",
        "time": "02/Mar/2026:08:00:00 +0000",
        "timeEpoch": 1772438400000u64
    });
    if let Some(arn) = request.iam_caller {
        context["authorizer"] = json!({"iam": {
            "accessKey": "AKIAEXAMPLE",
            "accountId": ACCOUNT,
            "callerId": "AIDAEXAMPLE",
            "principalOrgId": null,
            "userArn": arn,
            "userId": "AIDAEXAMPLE"
        }});
    }
    let mut headers = json!({"host": host, "user-agent": "dirsync-lambda-host"});
    if request.body.is_some() {
        headers["content-type"] = json!("application/json");
    }
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": request.path,
        "rawQueryString": request.query,
        "headers": headers,
        "requestContext": context,
        "body": request.body,
        "isBase64Encoded": false
    })
}

/// A function's answer to an HTTP API request.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl HttpResponse {
    /// Reads the response a function posted (payload 2.0 format).
    pub fn parse(posted: &[u8]) -> Result<HttpResponse, String> {
        let v: Value = serde_json::from_slice(posted)
            .map_err(|e| format!("the response is not JSON ({e}): {}", lossy(posted)))?;
        let status = v["statusCode"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .ok_or_else(|| format!("the response has no statusCode: {v}"))?;
        let headers = v["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.to_ascii_lowercase(), v.as_str()?.to_owned())))
            .collect();
        let text = v["body"].as_str().unwrap_or_default();
        let body = if v["isBase64Encoded"].as_bool() == Some(true) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| format!("the response body is not base64: {e}"))?;
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            text.to_owned()
        };
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<Value, String> {
        serde_json::from_str(&self.body).map_err(|e| {
            format!(
                "HTTP {} with a body that is not JSON ({e}): {}",
                self.status, self.body
            )
        })
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One SQS message as the event-source mapping delivers it.
#[derive(Debug, Clone, Default)]
pub struct SqsRecord {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    pub md5_of_body: String,
    /// `ApproximateReceiveCount`: 1 on the first delivery.
    pub receive_count: u32,
    /// `SentTimestamp`, epoch milliseconds.
    pub sent_ms: u64,
    /// `ApproximateFirstReceiveTimestamp`, epoch milliseconds.
    pub first_receive_ms: u64,
}

/// The event for a batch of messages from the queue `queue_arn`.
pub fn sqs(queue_arn: &str, records: &[SqsRecord]) -> Value {
    // arn:aws:sqs:REGION:ACCOUNT:NAME
    let region = queue_arn.split(':').nth(3).unwrap_or_default();
    let records: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "messageId": r.message_id,
                "receiptHandle": r.receipt_handle,
                "body": r.body,
                "attributes": {
                    "ApproximateReceiveCount": r.receive_count.to_string(),
                    "SentTimestamp": r.sent_ms.to_string(),
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": r.first_receive_ms.to_string()
                },
                "messageAttributes": {},
                "md5OfBody": r.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region
            })
        })
        .collect();
    json!({ "Records": records })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_iam_request_names_its_caller_and_a_public_one_has_no_authorizer() {
        let signed = http_api(&HttpRequest {
            method: "GET",
            path: "/accounts",
            iam_caller: Some("arn:aws:iam::123456789012:user/operator"),
            ..Default::default()
        });
        assert_eq!(
            signed["requestContext"]["authorizer"]["iam"]["userArn"],
            "arn:aws:iam::123456789012:user/operator"
        );
        let public = http_api(&HttpRequest {
            method: "GET",
            path: "/consent/callback",
            query: "state=x",
            ..Default::default()
        });
        assert!(public["requestContext"].get("authorizer").is_none());
        assert_eq!(public["rawQueryString"], "state=x");
    }

    #[test]
    fn a_response_is_read_whether_or_not_its_body_is_base64() {
        let plain = HttpResponse::parse(
            br#"{"statusCode":302,"headers":{"Location":"https://x"},"body":"moved","isBase64Encoded":false}"#,
        )
        .unwrap();
        assert_eq!(
            (plain.status, plain.headers["location"].as_str()),
            (302, "https://x")
        );
        let encoded =
            HttpResponse::parse(br#"{"statusCode":200,"body":"e30=","isBase64Encoded":true}"#)
                .unwrap();
        assert_eq!(encoded.json().unwrap(), json!({}));
    }

    #[test]
    fn an_sqs_batch_carries_each_delivery_count_and_the_queue_region() {
        let event = sqs(
            "arn:aws:sqs:us-east-1:123456789012:jobs",
            &[SqsRecord {
                message_id: "m1".into(),
                receive_count: 2,
                ..Default::default()
            }],
        );
        let record = &event["Records"][0];
        assert_eq!(record["attributes"]["ApproximateReceiveCount"], "2");
        assert_eq!(record["awsRegion"], "us-east-1");
    }
}
