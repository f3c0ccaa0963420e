//! The SAM template: cfn-lint clean, its table the one the code uses, and
//! the properties its operators rely on, read from the parsed template:
//! alarms that can notify, certificate rotation and sync windows watched,
//! schedules that retry and keep what they could not deliver, logs that
//! expire, roles no wider than their code, and a bounded public endpoint and
//! queue consumer.

mod cfn;

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::{Value, json};

use cfn::*;

#[test]
fn cfn_lint_passes() {
    let lint = std::env::var("DIRSYNC_CFN_LINT").unwrap_or_else(|_| {
        panic!(
            "DIRSYNC_CFN_LINT is not set: run the tests with `infra/test`, which installs cfn-lint"
        )
    });
    let out = Command::new(&lint)
        .arg(template())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {lint}: {e}"));
    assert!(
        out.status.success(),
        "cfn-lint found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_template_table_has_the_keys_the_code_uses() {
    let text = std::fs::read_to_string(template()).unwrap();
    // The attribute names are fixed by the Table port; the index by the
    // DynamoDB adapter. A rename in one place without the other fails here.
    for name in dirsync_shared::store::table::RESERVED {
        assert!(
            text.contains(&format!("AttributeName: {name}")),
            "template lacks {name}"
        );
    }
    assert!(text.contains(&format!(
        "IndexName: {}",
        dirsync_shared::store::dynamo::GSI1
    )));
    assert!(
        text.contains("ProjectionType: ALL"),
        "gsi1 look-ups read whole items"
    );
    assert!(text.contains("PointInTimeRecoveryEnabled: true"));
}

// ---- 1. the alarm topic's key --------------------------------------------------

/// The `aws:SourceArn` pattern (ArnLike) a statement holds CloudWatch to,
/// after checking it is held to this account.
fn alarm_source(statement: &Value) -> &str {
    let c = &statement["Condition"];
    assert_eq!(
        ref_to(&c["StringEquals"]["aws:SourceAccount"]),
        Some("AWS::AccountId"),
        "not held to the stack's account: {statement}"
    );
    sub(&c["ArnLike"]["aws:SourceArn"])
        .unwrap_or_else(|| panic!("not held to this account's alarms: {statement}"))
}

/// The alarm topic's key, after checking it is one of this stack.
fn alarm_key(t: &Template) -> &Value {
    let key = ref_to(&props(t, "AlarmTopic")["KmsMasterKeyId"]).expect(
        "the alarm topic must use the stack's own key (an AWS-managed key's policy cannot let CloudWatch in)",
    );
    assert_eq!(t.type_of(key), "AWS::KMS::Key");
    props(t, key)
}

fn alarm_topic_policy(t: &Template) -> &Value {
    let (_, p) = t
        .of_type("AWS::SNS::TopicPolicy")
        .into_iter()
        .find(|(_, p)| refers_to(&p["Topics"], "AlarmTopic"))
        .expect("the alarm topic has a policy");
    &p["PolicyDocument"]
}

fn rules_targeting<'a>(t: &'a Template, topic: &str) -> Vec<(&'a str, &'a Value)> {
    t.of_type("AWS::Events::Rule")
        .into_iter()
        .filter(|(_, r)| {
            list(&r["Targets"])
                .iter()
                .any(|x| refers_to(&x["Arn"], topic))
        })
        .collect()
}

#[test]
fn the_alarm_topic_is_encrypted_with_a_rotating_key_of_its_own() {
    let t = parsed();
    let key = ref_to(&props(&t, "AlarmTopic")["KmsMasterKeyId"]).unwrap_or_default();
    assert_eq!(alarm_key(&t)["EnableKeyRotation"], true, "{key} rotates");
    assert!(
        t.of_type("AWS::KMS::Alias")
            .iter()
            .any(|(_, a)| ref_to(&a["TargetKeyId"]) == Some(key)),
        "{key} has an alias"
    );
    let root = list(&alarm_key(&t)["KeyPolicy"]["Statement"])
        .into_iter()
        .find(|s| {
            sub(&s["Principal"]["AWS"]) == Some("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")
        })
        .expect("the account administers the key");
    assert!(allows(root, "kms:PutKeyPolicy"), "{root}");
}

#[test]
fn cloudwatch_and_eventbridge_may_use_the_alarm_key() {
    let t = parsed();
    let policy = &alarm_key(&t)["KeyPolicy"];
    let cloudwatch = service_statement(policy, "cloudwatch.amazonaws.com");
    let events = service_statement(policy, "events.amazonaws.com");
    for s in [cloudwatch, events] {
        for action in ["kms:Decrypt", "kms:GenerateDataKey"] {
            assert!(allows(s, action), "{action} missing: {s}");
        }
    }
    assert_eq!(
        alarm_source(cloudwatch),
        alarm_source(service_statement(
            alarm_topic_policy(&t),
            "cloudwatch.amazonaws.com"
        )),
        "key and topic let the same alarms in"
    );
    // Amazon SNS documents aws:SourceAccount / aws:SourceArn as unsupported
    // in a key policy for EventBridge-to-encrypted topics: with them every
    // rotation-failed event would be dropped. The topic policy confines it.
    assert!(
        source_conditions(events).is_empty(),
        "the key must not hold EventBridge to source conditions: {events}"
    );
}

#[test]
fn only_this_stacks_alarms_and_rules_may_publish_to_the_alarm_topic() {
    let t = parsed();
    let policy = alarm_topic_policy(&t);
    let alarms = service_statement(policy, "cloudwatch.amazonaws.com");
    let rules = service_statement(policy, "events.amazonaws.com");
    for s in [alarms, rules] {
        assert!(
            allows(s, "sns:Publish") && refers_to(&s["Resource"], "AlarmTopic"),
            "{s}"
        );
    }
    let pattern = alarm_source(alarms);
    for (name, a) in t.alarms() {
        let alarm_name = sub(&a["AlarmName"]).unwrap_or_else(|| {
            panic!("{name}: give it an AlarmName the topic and key let publish ({pattern})")
        });
        let arn = format!(
            "arn:${{AWS::Partition}}:cloudwatch:${{AWS::Region}}:${{AWS::AccountId}}:alarm:{alarm_name}"
        );
        assert!(
            glob(pattern, &arn),
            "{name} ({alarm_name}) may not publish under {pattern}"
        );
    }

    let c = &rules["Condition"];
    assert_eq!(
        ref_to(&c["StringEquals"]["aws:SourceAccount"]),
        Some("AWS::AccountId"),
        "{rules}"
    );
    let sources: BTreeSet<(&str, &str)> = list(&c["ArnEquals"]["aws:SourceArn"])
        .into_iter()
        .map(|v| get_att(v).unwrap_or_else(|| panic!("name each rule, no pattern: {v}")))
        .collect();
    let targeting: BTreeSet<(&str, &str)> = rules_targeting(&t, "AlarmTopic")
        .into_iter()
        .map(|(rule, _)| (rule, "Arn"))
        .collect();
    assert_eq!(
        sources, targeting,
        "the rules that may publish are those that target the topic"
    );
}

// ---- 2. what raises an alarm --------------------------------------------------------

/// The alarm on `metric` of `namespace` whose dimension `dimension` is `value`.
fn alarm_on<'a>(
    t: &'a Template,
    namespace: &str,
    metric: &str,
    dimension: (&str, &Value),
) -> &'a Value {
    t.alarms()
        .into_iter()
        .map(|(_, a)| a)
        .find(|a| {
            a["Namespace"] == namespace
                && a["MetricName"] == metric
                && list(&a["Dimensions"])
                    .iter()
                    .any(|d| d["Name"] == dimension.0 && &d["Value"] == dimension.1)
        })
        .unwrap_or_else(|| {
            panic!(
                "no alarm on {namespace} {metric} for {} {}",
                dimension.0, dimension.1
            )
        })
}

fn assert_fires_on_any(alarm: &Value) {
    assert_eq!(alarm["Threshold"], 0, "{alarm}");
    assert_eq!(
        alarm["ComparisonOperator"], "GreaterThanThreshold",
        "{alarm}"
    );
}

fn function_errors_alarm<'a>(t: &'a Template, function: &str) -> &'a Value {
    let alarm = alarm_on(
        t,
        "AWS/Lambda",
        "Errors",
        ("FunctionName", &json!({ "Ref": function })),
    );
    assert_fires_on_any(alarm);
    assert!(
        refers_to(&alarm["OKActions"], "AlarmTopic"),
        "{function}: say when it is over"
    );
    alarm
}

fn queue_alarm<'a>(t: &'a Template, queue: &str) -> &'a Value {
    let name = json!({ "Fn::GetAtt": [queue, "QueueName"] });
    let alarm = alarm_on(
        t,
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        ("QueueName", &name),
    );
    assert_fires_on_any(alarm);
    alarm
}

#[test]
fn every_alarm_notifies_the_topic_and_says_what_to_do() {
    let t = parsed();
    for (name, a) in t.alarms() {
        assert!(
            refers_to(&a["AlarmActions"], "AlarmTopic"),
            "{name} notifies nobody"
        );
        assert_eq!(
            a["TreatMissingData"], "notBreaching",
            "{name}: no data is no failure"
        );
        assert!(
            a["AlarmDescription"].as_str().is_some_and(|d| d.len() > 40),
            "{name}: say what to do"
        );
    }
}

#[test]
fn rotation_errors_window_errors_dead_letters_and_runs_raise_alarms() {
    let t = parsed();
    function_errors_alarm(&t, "CertRotationFunction");
    function_errors_alarm(&t, "SyncWindowFunction");
    queue_alarm(&t, "JobDeadLetterQueue");
    let namespace = dirsync_shared::app::metrics::NAMESPACE;
    for metric in ["Failed", "Staged"] {
        let run = t
            .alarms()
            .into_iter()
            .find(|(_, a)| a["Namespace"] == namespace && a["MetricName"] == metric);
        assert!(run.is_some(), "no alarm on {namespace} {metric}");
    }
}

#[test]
fn a_failed_rotation_of_the_certificate_reaches_the_alarm_topic() {
    let t = parsed();
    let (rule, r) = rules_targeting(&t, "AlarmTopic")
        .into_iter()
        .find(|(_, r)| r["EventPattern"]["detail"]["eventName"] == json!(["RotationFailed"]))
        .expect("a rule sends Secrets Manager's RotationFailed to the alarm topic");
    let pattern = &r["EventPattern"];
    assert_eq!(pattern["source"], json!(["aws.secretsmanager"]), "{rule}");
    assert_eq!(
        pattern["detail-type"],
        json!(["AWS Service Event via CloudTrail"]),
        "{rule}"
    );
    assert_eq!(
        pattern["detail"]["eventSource"],
        json!(["secretsmanager.amazonaws.com"]),
        "{rule}"
    );
    assert!(
        refers_to(
            &pattern["detail"]["additionalEventData"]["SecretId"],
            "AppCertificateSecret"
        ),
        "{rule} is scoped to the certificate's secret"
    );
    assert_eq!(r["State"], "ENABLED", "{rule}");
}

// ---- 3. schedules ---------------------------------------------------------------------

fn schedules(t: &Template) -> Vec<(&str, &Value)> {
    let schedules = t.of_type("AWS::Scheduler::Schedule");
    assert!(!schedules.is_empty());
    schedules
}

#[test]
fn schedules_retry_a_window_they_could_not_deliver() {
    let t = parsed();
    for (name, s) in schedules(&t) {
        let retry = &s["Target"]["RetryPolicy"];
        let attempts = retry["MaximumRetryAttempts"].as_i64().unwrap_or(0);
        let age = retry["MaximumEventAgeInSeconds"].as_i64().unwrap_or(0);
        assert!(
            (1..=185).contains(&attempts),
            "{name}: retry the window ({retry})"
        );
        assert!(
            (60..=86400).contains(&age),
            "{name}: MaximumEventAgeInSeconds {retry}"
        );
    }
}

#[test]
fn windows_that_did_not_run_wait_in_a_watched_queue() {
    let t = parsed();
    for (name, s) in schedules(&t) {
        let target = &s["Target"];
        let (queue, _) = get_att(&target["DeadLetterConfig"]["Arn"])
            .unwrap_or_else(|| panic!("{name}: a dead-letter queue of this stack"));
        assert_eq!(t.type_of(queue), "AWS::SQS::Queue");
        let (role, _) = get_att(&target["RoleArn"]).unwrap();
        let arn = format!("${{{queue}.Arn}}");
        assert!(
            !granted(&t, role, "sqs", &["SendMessage"], &arn).is_empty(),
            "{name}: the scheduler sends dead letters as {role}"
        );
        queue_alarm(&t, queue);

        // The scheduler invokes asynchronously: what fails in the function
        // after Lambda's retries goes to the same queue.
        let (function, _) = get_att(&target["Arn"]).unwrap();
        let on_failure =
            &props(&t, function)["EventInvokeConfig"]["DestinationConfig"]["OnFailure"];
        assert_eq!(on_failure["Type"], "SQS", "{function}");
        assert_eq!(
            get_att(&on_failure["Destination"]),
            Some((queue, "Arn")),
            "{function}"
        );
    }
}

// ---- 4. logs ---------------------------------------------------------------------------

#[test]
fn every_function_logs_to_a_group_of_its_own_that_expires() {
    let t = parsed();
    assert!(
        t.of_type("AWS::Lambda::Function").is_empty(),
        "a plain AWS::Lambda::Function needs the same log group check"
    );
    assert!(
        t.0["Globals"]["Function"]["LoggingConfig"]["LogGroup"].is_null(),
        "each function has its own group"
    );
    let retention = &t.0["Parameters"]["LogRetentionDays"];
    assert!(
        list(&retention["AllowedValues"]).contains(&&retention["Default"])
            && t.default_number("LogRetentionDays") >= 30,
        "LogRetentionDays: {retention}"
    );
    let mut groups = BTreeSet::new();
    for (name, f) in t.functions() {
        let function =
            sub(&f["FunctionName"]).unwrap_or_else(|| panic!("{name}: name it, for its log group"));
        let group = ref_to(&f["LoggingConfig"]["LogGroup"]).unwrap_or_else(|| {
            panic!("{name}: LoggingConfig.LogGroup must be a group of this stack")
        });
        assert_eq!(t.type_of(group), "AWS::Logs::LogGroup");
        let g = props(&t, group);
        assert_eq!(
            sub(&g["LogGroupName"]),
            Some(format!("/aws/lambda/{function}").as_str()),
            "{group}"
        );
        assert_eq!(
            ref_to(&g["RetentionInDays"]),
            Some("LogRetentionDays"),
            "{group}"
        );
        assert!(groups.insert(group), "{group} serves two functions");
    }
}

// ---- 5. roles --------------------------------------------------------------------------

#[test]
fn connector_secrets_live_apart_from_the_certificate() {
    let t = parsed();
    let env = &t.0["Globals"]["Function"]["Environment"]["Variables"];
    let prefix = sub(&env["DIRSYNC_SECRET_PREFIX"]).unwrap();
    assert_eq!(
        ref_to(&env["DIRSYNC_APP_CERT_SECRET"]),
        Some("AppCertificateSecret")
    );
    let certificate = sub(&props(&t, "AppCertificateSecret")["Name"]).unwrap();
    // App::secret_name: `{prefix}/{account}/{connector}`.
    assert!(
        !certificate.starts_with(&format!("{prefix}/")),
        "the certificate {certificate} is under the connector secrets' path {prefix}/"
    );
    assert!(
        prefix.ends_with("/connectors"),
        "{prefix}: a path of their own"
    );
}

/// What each function's code calls through `SecretsManagerStore`, on a
/// connector's secret and on the certificate: `get` is GetSecretValue; `put`
/// DescribeSecret, RestoreSecret, CreateSecret, PutSecretValue; `delete`
/// DeleteSecret; the rotation's steps DescribeSecret, GetSecretValue,
/// PutSecretValue, UpdateSecretVersionStage.
const SECRET_USE: [(&str, &[&str], &[&str]); 5] = [
    ("SyncWindowFunction", &[], &[]),
    (
        "SyncWorkerFunction",
        &["GetSecretValue"],
        &["GetSecretValue"],
    ),
    (
        "AdminApiFunction",
        &[
            "CreateSecret",
            "DeleteSecret",
            "DescribeSecret",
            "GetSecretValue",
            "PutSecretValue",
            "RestoreSecret",
        ],
        &["GetSecretValue"],
    ),
    // A migration deletes the legacy client secret dirsync stored.
    (
        "ConsentCallbackFunction",
        &["DeleteSecret"],
        &["GetSecretValue"],
    ),
    (
        "CertRotationFunction",
        &[],
        &[
            "DescribeSecret",
            "GetSecretValue",
            "PutSecretValue",
            "UpdateSecretVersionStage",
        ],
    ),
];

#[test]
fn only_the_rotation_role_writes_the_certificate_and_each_role_reaches_the_secrets_its_code_uses() {
    let t = parsed();
    let prefix =
        sub(&t.0["Globals"]["Function"]["Environment"]["Variables"]["DIRSYNC_SECRET_PREFIX"])
            .unwrap();
    let connector = secret_arn(&format!("{prefix}/acme/main"));
    let certificate = secret_arn(sub(&props(&t, "AppCertificateSecret")["Name"]).unwrap());
    let elsewhere = secret_arn("another-app/database");
    let functions: BTreeSet<&str> = t.functions().into_iter().map(|(n, _)| n).collect();
    let known: BTreeSet<&str> = SECRET_USE.iter().map(|e| e.0).collect();
    assert_eq!(
        functions, known,
        "say in SECRET_USE what each function may do"
    );
    let reads = set(&["DescribeSecret", "GetSecretValue"]);
    for role in roles(&t) {
        let on = |arn: &str| granted(&t, role, "secretsmanager", SECRETS_MANAGER, arn);
        assert!(
            role == "CertRotationFunction" || on(&certificate).is_subset(&reads),
            "{role} may write the app certificate: {:?}",
            on(&certificate)
        );
        let (on_connector, on_cert) = SECRET_USE
            .iter()
            .find(|e| e.0 == role)
            .map_or((set(&[]), set(&[])), |e| (set(e.1), set(e.2)));
        assert_eq!(on(&connector), on_connector, "{role} on {connector}");
        assert_eq!(on(&certificate), on_cert, "{role} on {certificate}");
        assert!(on(&elsewhere).is_empty(), "{role} reaches {elsewhere}");
    }
}

#[test]
fn function_roles_grant_the_table_and_queue_calls_their_adapters_make_and_no_more() {
    let t = parsed();
    // DynamoTable::create_table (and its wait on DescribeTable) serves
    // DynamoDB Local and the tests; production tables come from the template.
    let table = adapter_calls("shared/src/store/dynamo.rs", DYNAMODB, Some("create_table"));
    let queue = adapter_calls("shared/src/queue/mod.rs", SQS, None);
    assert!(
        table.contains("Query") && queue.contains("SendMessage"),
        "{table:?} {queue:?}"
    );
    let index = set(&["Query"]);
    // Which functions use the table and send jobs (the rotation has neither;
    // the consent callback sends none).
    let uses: [(&str, bool, bool); 5] = [
        ("SyncWindowFunction", true, true),
        ("SyncWorkerFunction", true, true),
        ("AdminApiFunction", true, true),
        ("ConsentCallbackFunction", true, false),
        ("CertRotationFunction", false, false),
    ];
    let none = BTreeSet::new();
    for (role, uses_table, sends) in uses {
        let on = |service, actions, arn: &str| granted(&t, role, service, actions, arn);
        let pick = |yes: bool, s: &BTreeSet<String>| if yes { s.clone() } else { none.clone() };
        assert_eq!(
            on("dynamodb", DYNAMODB, "${StateTable.Arn}"),
            pick(uses_table, &table),
            "{role} on the table"
        );
        assert_eq!(
            on("dynamodb", DYNAMODB, "${StateTable.Arn}/index/gsi1"),
            pick(uses_table, &index),
            "{role} on gsi1"
        );
        assert_eq!(
            on("sqs", SQS, "${JobQueue.Arn}"),
            pick(sends, &queue),
            "{role} on the job queue"
        );
    }
}

// ---- 6. bounds -------------------------------------------------------------------------

#[test]
fn the_public_consent_endpoint_is_throttled_and_its_function_bounded() {
    let t = parsed();
    let public: Vec<&str> = t
        .of_type("AWS::Serverless::HttpApi")
        .into_iter()
        .filter(|(_, a)| a["Auth"]["DefaultAuthorizer"].is_null())
        .map(|(n, _)| n)
        .collect();
    assert_eq!(public, ["ConsentApi"], "the public HTTP APIs");
    for api in public {
        let route = &props(&t, api)["DefaultRouteSettings"];
        for setting in ["ThrottlingRateLimit", "ThrottlingBurstLimit"] {
            let p = ref_to(&route[setting])
                .unwrap_or_else(|| panic!("{api}: {setting} from a parameter"));
            assert!(t.default_number(p) > 0, "{api}: {setting}");
        }
        for (name, f) in t.functions().into_iter().filter(|(_, f)| serves(f, api)) {
            let c = ref_to(&f["ReservedConcurrentExecutions"]).unwrap_or_else(|| {
                panic!("{name} serves {api}: reserve its concurrency (a parameter)")
            });
            assert!(t.default_number(c) >= 1, "{name}: {c}");
        }
    }
}

#[test]
fn the_job_queue_feeds_a_bounded_number_of_workers() {
    let t = parsed();
    let events = props(&t, "SyncWorkerFunction")["Events"]
        .as_object()
        .unwrap();
    let sqs: Vec<&Value> = events.values().filter(|e| e["Type"] == "SQS").collect();
    assert!(!sqs.is_empty());
    for event in sqs {
        let p = ref_to(&event["Properties"]["ScalingConfig"]["MaximumConcurrency"])
            .expect("the SQS source's MaximumConcurrency comes from a parameter");
        let param = &t.0["Parameters"][p];
        assert!(
            param["MinValue"].as_i64().is_some_and(|m| m >= 2),
            "{p}: SQS allows 2 at least"
        );
        assert!(
            param["MaxValue"].as_i64().is_some_and(|m| m <= 1000),
            "{p}: SQS allows 1000 at most"
        );
        assert!(t.default_number(p) >= 2, "{p}");
    }
}

/// Whether a function has an HTTP event on `api`.
fn serves(function: &Value, api: &str) -> bool {
    function["Events"].as_object().is_some_and(|events| {
        events
            .values()
            .any(|e| e["Type"] == "HttpApi" && ref_to(&e["Properties"]["ApiId"]) == Some(api))
    })
}
