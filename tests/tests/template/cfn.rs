//! Reading the SAM template as CloudFormation does, and what its roles
//! grant: the helpers of the template tests.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::{Map, Value, json};

pub fn template() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../template.yaml")
}

/// The template as CloudFormation reads it: short tags in their long form
/// (`!Ref X` as `{"Ref": "X"}`, `!GetAtt A.B` as `{"Fn::GetAtt": ["A", "B"]}`,
/// `!Sub s` as `{"Fn::Sub": s}`, ...).
pub struct Template(pub Value);

pub fn parsed() -> Template {
    let text = std::fs::read_to_string(template()).unwrap();
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("template.yaml: {e}"));
    Template(long_form(yaml))
}

pub fn long_form(v: serde_yaml_ng::Value) -> Value {
    use serde_yaml_ng::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => b.into(),
        Y::Number(n) => serde_json::to_value(n).unwrap(),
        Y::String(s) => s.into(),
        Y::Sequence(items) => items.into_iter().map(long_form).collect(),
        Y::Mapping(m) => m
            .into_iter()
            .map(|(k, v)| (long_form(k).as_str().unwrap().to_owned(), long_form(v)))
            .collect::<Map<_, _>>()
            .into(),
        Y::Tagged(t) => {
            let tag = t.tag.to_string();
            let name = tag.trim_start_matches('!');
            let value = long_form(t.value);
            match (name, value) {
                ("Ref", v) => json!({ "Ref": v }),
                ("GetAtt", Value::String(s)) => {
                    let (resource, attribute) = s.split_once('.').unwrap();
                    json!({ "Fn::GetAtt": [resource, attribute] })
                }
                (name, v) => json!({ format!("Fn::{name}"): v }),
            }
        }
    }
}

impl Template {
    pub fn resources(&self) -> &Map<String, Value> {
        self.0["Resources"].as_object().unwrap()
    }

    pub fn resource(&self, name: &str) -> &Value {
        self.resources()
            .get(name)
            .unwrap_or_else(|| panic!("the template has no resource {name}"))
    }

    pub fn type_of(&self, name: &str) -> &str {
        self.resource(name)["Type"].as_str().unwrap()
    }

    pub fn of_type<'a>(&'a self, ty: &str) -> Vec<(&'a str, &'a Value)> {
        self.resources()
            .iter()
            .filter(|(_, r)| r["Type"] == ty)
            .map(|(n, r)| (n.as_str(), &r["Properties"]))
            .collect()
    }

    /// A parameter's default, which must be a number.
    pub fn default_number(&self, parameter: &str) -> i64 {
        let p = &self.0["Parameters"][parameter];
        assert_eq!(p["Type"], "Number", "parameter {parameter}");
        p["Default"]
            .as_i64()
            .unwrap_or_else(|| panic!("parameter {parameter} has no numeric default"))
    }

    pub fn functions(&self) -> Vec<(&str, &Value)> {
        self.of_type("AWS::Serverless::Function")
    }

    pub fn alarms(&self) -> Vec<(&str, &Value)> {
        self.of_type("AWS::CloudWatch::Alarm")
    }
}

pub fn props<'a>(t: &'a Template, name: &str) -> &'a Value {
    &t.resource(name)["Properties"]
}

pub fn ref_to(v: &Value) -> Option<&str> {
    v.as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.get("Ref"))
        .and_then(Value::as_str)
}

pub fn get_att(v: &Value) -> Option<(&str, &str)> {
    let a = v.get("Fn::GetAtt")?.as_array()?;
    Some((a.first()?.as_str()?, a.get(1)?.as_str()?))
}

pub fn sub(v: &Value) -> Option<&str> {
    v.get("Fn::Sub")?.as_str()
}

/// A value or list of values (IAM's Action, Resource, ...) as a list.
pub fn list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Null => vec![],
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

pub fn refers_to(v: &Value, name: &str) -> bool {
    list(v).iter().any(|x| ref_to(x) == Some(name))
}

/// IAM's wildcards: `*` any run of characters, `?` any one.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            (pi, ti) = (pi + 1, ti + 1);
        } else if pi < p.len() && p[pi] == '*' {
            (star, mark, pi) = (Some(pi), ti, pi + 1);
        } else if let Some(s) = star {
            (pi, mark, ti) = (s + 1, mark + 1, mark + 1);
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

// ---- IAM ------------------------------------------------------------------------

/// Every Allow statement of every role, by the role's owner: a function's
/// inline `Policies`, or an `AWS::IAM::Role`'s.
pub fn allow_statements(t: &Template) -> Vec<(&str, &Value)> {
    assert!(
        t.of_type("AWS::IAM::Policy").is_empty() && t.of_type("AWS::IAM::ManagedPolicy").is_empty(),
        "teach allow_statements to read AWS::IAM::Policy / ManagedPolicy before adding one"
    );
    let mut out = vec![];
    for (name, p) in t.functions() {
        for policy in list(&p["Policies"]) {
            assert!(
                policy.get("Statement").is_some(),
                "{name}: policy {policy} is a SAM policy template or a managed policy, which \
                 these tests cannot check: write it as a Statement"
            );
            out.extend(list(&policy["Statement"]).into_iter().map(|s| (name, s)));
        }
    }
    for (name, p) in t.of_type("AWS::IAM::Role") {
        assert!(
            p["ManagedPolicyArns"].is_null(),
            "{name}: managed policies cannot be checked here; write them as inline policies"
        );
        for policy in list(&p["Policies"]) {
            let statements = list(&policy["PolicyDocument"]["Statement"]);
            out.extend(statements.into_iter().map(|s| (name, s)));
        }
    }
    out.retain(|(_, s)| s["Effect"] == "Allow");
    out
}

/// A statement's Resource as the text IAM matches: a secret by its ARN, any
/// other resource as `${Name}` or `${Name.Arn}` (the way `!Sub` writes it).
pub fn resource_pattern(t: &Template, v: &Value) -> String {
    if let Some(s) = v.as_str().or_else(|| sub(v)) {
        return s.to_owned();
    }
    if let Some(name) = ref_to(v) {
        if t.type_of(name) == "AWS::SecretsManager::Secret" {
            return secret_arn(sub(&props(t, name)["Name"]).unwrap());
        }
        return format!("${{{name}}}");
    }
    if let Some((name, attribute)) = get_att(v) {
        return format!("${{{name}.{attribute}}}");
    }
    panic!("cannot read the resource {v}: teach resource_pattern this form")
}

/// A secret's ARN: Secrets Manager ends it with `-` and six random characters.
pub fn secret_arn(name: &str) -> String {
    format!(
        "arn:${{AWS::Partition}}:secretsmanager:${{AWS::Region}}:${{AWS::AccountId}}:secret:{name}-AbCdEf"
    )
}

/// The `actions` (without their service prefix) that `role` may take on
/// `arn`, wildcards in the statements included.
pub fn granted(
    t: &Template,
    role: &str,
    service: &str,
    actions: &[&str],
    arn: &str,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (_, s) in allow_statements(t).into_iter().filter(|(r, _)| *r == role) {
        assert!(
            s.get("NotAction").is_none() && s.get("NotResource").is_none(),
            "{role}: NotAction / NotResource cannot be checked here"
        );
        let on_arn = list(&s["Resource"])
            .iter()
            .any(|r| glob(&resource_pattern(t, r), arn));
        let covered = actions
            .iter()
            .filter(|a| on_arn && allows(s, &format!("{service}:{a}")));
        out.extend(covered.map(|a| a.to_string()));
    }
    out
}

/// The Allow statement of `policy` for a service principal.
pub fn service_statement<'a>(policy: &'a Value, service: &str) -> &'a Value {
    list(&policy["Statement"])
        .into_iter()
        .find(|s| s["Effect"] == "Allow" && s["Principal"]["Service"] == service)
        .unwrap_or_else(|| panic!("no statement lets {service} in: {policy}"))
}

/// Whether a statement's Action covers `action` (IAM ignores case here).
pub fn allows(statement: &Value, action: &str) -> bool {
    let action = action.to_ascii_lowercase();
    list(&statement["Action"])
        .iter()
        .any(|p| glob(&p.as_str().unwrap().to_ascii_lowercase(), &action))
}

/// The confused-deputy conditions a statement holds its principal to.
pub fn source_conditions(statement: &Value) -> Vec<&'static str> {
    let keys: BTreeSet<&str> = statement["Condition"]
        .as_object()
        .into_iter()
        .flat_map(|c| c.values())
        .filter_map(Value::as_object)
        .flat_map(|c| c.keys().map(String::as_str))
        .collect();
    ["aws:SourceAccount", "aws:SourceArn", "aws:SourceOrgID"]
        .into_iter()
        .filter(|k| keys.contains(k))
        .collect()
}

pub fn roles(t: &Template) -> BTreeSet<&str> {
    allow_statements(t).into_iter().map(|(r, _)| r).collect()
}

pub fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

pub const SECRETS_MANAGER: &[&str] = &[
    "BatchGetSecretValue",
    "CancelRotateSecret",
    "CreateSecret",
    "DeleteResourcePolicy",
    "DeleteSecret",
    "DescribeSecret",
    "GetRandomPassword",
    "GetResourcePolicy",
    "GetSecretValue",
    "ListSecretVersionIds",
    "ListSecrets",
    "PutResourcePolicy",
    "PutSecretValue",
    "RemoveRegionsFromReplication",
    "ReplicateSecretToRegions",
    "RestoreSecret",
    "RotateSecret",
    "StopReplicationToReplica",
    "TagResource",
    "UntagResource",
    "UpdateSecret",
    "UpdateSecretVersionStage",
    "ValidateResourcePolicy",
];

pub const DYNAMODB: &[&str] = &[
    "BatchGetItem",
    "BatchWriteItem",
    "ConditionCheckItem",
    "CreateTable",
    "DeleteItem",
    "DeleteTable",
    "DescribeTable",
    "GetItem",
    "PartiQLDelete",
    "PartiQLInsert",
    "PartiQLSelect",
    "PartiQLUpdate",
    "PutItem",
    "Query",
    "Scan",
    "TransactGetItems",
    "TransactWriteItems",
    "UpdateItem",
    "UpdateTable",
];

pub const SQS: &[&str] = &[
    "ChangeMessageVisibility",
    "DeleteMessage",
    "DeleteQueue",
    "GetQueueAttributes",
    "GetQueueUrl",
    "PurgeQueue",
    "ReceiveMessage",
    "SendMessage",
    "SetQueueAttributes",
];

/// The API calls an adapter's source makes, as IAM actions: `.get_item()`
/// is `GetItem`. `skip_fn` names a function of the adapter left out (one
/// that serves only local runs).
pub fn adapter_calls(path: &str, actions: &[&str], skip_fn: Option<&str>) -> BTreeSet<String> {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    let mut source = std::fs::read_to_string(&file).unwrap();
    if let Some(f) = skip_fn {
        let start = source
            .find(&format!("pub async fn {f}("))
            .unwrap_or_else(|| panic!("{path} has no fn {f}"));
        let end = start + source[start..].find("\n    }\n").unwrap();
        source.replace_range(start..end, "");
    }
    actions
        .iter()
        .filter(|a| source.contains(&format!(".{}()", snake(a))))
        .map(|a| a.to_string())
        .collect()
}

pub fn snake(action: &str) -> String {
    let mut out = String::new();
    for c in action.chars() {
        if c.is_ascii_uppercase() && !out.is_empty() {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}
