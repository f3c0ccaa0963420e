//! Which Graph operation a request is, its stats key and its base cost.

use axum::http::{Method, StatusCode};

use crate::error::GraphError;

/// How an application is addressed: `applications/{id}` or
/// `applications(appId='{appId}')`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AppRef {
    ObjectId(String),
    AppId(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Organization,
    Users,
    UsersDelta,
    User(String),
    Groups,
    GroupsDelta,
    Group(String),
    Members { group: String, transitive: bool },
    Application(AppRef),
    AddKey(AppRef),
    RemoveKey(AppRef),
    Batch,
}

fn is_delta(segment: &str) -> bool {
    matches!(
        segment,
        "delta" | "delta()" | "microsoft.graph.delta" | "microsoft.graph.delta()"
    )
}

fn app_ref(segments: &[&str]) -> Option<(AppRef, usize)> {
    let first = segments.first()?;
    if *first == "applications" {
        let id = segments.get(1)?;
        return Some((AppRef::ObjectId((*id).to_string()), 2));
    }
    let inner = first
        .strip_prefix("applications(appId=")?
        .strip_suffix(')')?
        .trim_matches('\'');
    Some((AppRef::AppId(inner.to_string()), 1))
}

impl Route {
    /// Parses the path after the Graph root, e.g. `/v1.0/groups/{id}/members`.
    pub fn parse(method: &Method, path: &str) -> Result<Route, GraphError> {
        let Some(rest) = path.strip_prefix("/v1.0/") else {
            let version = path.trim_start_matches('/').split('/').next().unwrap_or("");
            return Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("Invalid version: {version}"),
            ));
        };
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let route = match segments.as_slice() {
            ["organization"] => Route::Organization,
            ["users"] => Route::Users,
            ["users", d] if is_delta(d) => Route::UsersDelta,
            ["users", id] => Route::User((*id).to_string()),
            ["groups"] => Route::Groups,
            ["groups", d] if is_delta(d) => Route::GroupsDelta,
            ["groups", id] => Route::Group((*id).to_string()),
            ["groups", id, "members"] => Route::Members {
                group: (*id).to_string(),
                transitive: false,
            },
            ["groups", id, "transitiveMembers"] => Route::Members {
                group: (*id).to_string(),
                transitive: true,
            },
            ["$batch"] => Route::Batch,
            _ => match app_ref(&segments) {
                Some((app, used)) => match &segments[used..] {
                    [] => Route::Application(app),
                    ["addKey" | "microsoft.graph.addKey"] => Route::AddKey(app),
                    ["removeKey" | "microsoft.graph.removeKey"] => Route::RemoveKey(app),
                    [other, ..] => return Err(GraphError::no_segment(other)),
                },
                None => {
                    let unknown = segments.last().copied().unwrap_or("");
                    return Err(GraphError::no_segment(unknown));
                }
            },
        };
        let expected = match route {
            Route::AddKey(_) | Route::RemoveKey(_) | Route::Batch => Method::POST,
            _ => Method::GET,
        };
        if *method != expected {
            return Err(GraphError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "Request_BadRequest",
                "Specified HTTP method is not allowed for the request target.",
            ));
        }
        Ok(route)
    }

    /// The key under which stats count the route.
    pub fn key(&self) -> &'static str {
        match self {
            Route::Organization => "GET /v1.0/organization",
            Route::Users => "GET /v1.0/users",
            Route::UsersDelta => "GET /v1.0/users/delta",
            Route::User(_) => "GET /v1.0/users/{id}",
            Route::Groups => "GET /v1.0/groups",
            Route::GroupsDelta => "GET /v1.0/groups/delta",
            Route::Group(_) => "GET /v1.0/groups/{id}",
            Route::Members {
                transitive: false, ..
            } => "GET /v1.0/groups/{id}/members",
            Route::Members {
                transitive: true, ..
            } => "GET /v1.0/groups/{id}/transitiveMembers",
            Route::Application(_) => "GET /v1.0/applications/{id}",
            Route::AddKey(_) => "POST /v1.0/applications/{id}/addKey",
            Route::RemoveKey(_) => "POST /v1.0/applications/{id}/removeKey",
            Route::Batch => "POST /v1.0/$batch",
        }
    }

    /// Base resource-unit cost from Graph's identity throttling table; paths
    /// not listed there cost 1 (delta included).
    pub fn base_cost(&self) -> u32 {
        match self {
            Route::Users => 2,
            Route::Members {
                transitive: false, ..
            } => 3,
            Route::Members {
                transitive: true, ..
            } => 5,
            _ => 1,
        }
    }
}

/// Query options of a Graph URL, names matched case-insensitively.
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn parse(query: &str) -> Params {
        Params {
            pairs: url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// `$top`, validated as Graph does (1..=999).
    pub fn top(&self) -> Result<Option<u32>, GraphError> {
        let Some(raw) = self.get("$top") else {
            return Ok(None);
        };
        match raw.trim().parse::<u32>() {
            Ok(top) if (1..=999).contains(&top) => Ok(Some(top)),
            _ => Err(GraphError::bad_request(format!(
                "Invalid page size specified: '{raw}'. Must be between 1 and 999 inclusive."
            ))),
        }
    }

    /// `$top` for costing: a malformed value costs as if absent.
    pub fn top_lenient(&self) -> Option<u32> {
        self.get("$top").and_then(|t| t.trim().parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_routes_dirsync_uses() {
        let get = Method::GET;
        assert_eq!(Route::parse(&get, "/v1.0/users").unwrap(), Route::Users);
        assert_eq!(
            Route::parse(&get, "/v1.0/users/delta").unwrap(),
            Route::UsersDelta
        );
        assert_eq!(
            Route::parse(&get, "/v1.0/groups/abc/transitiveMembers").unwrap(),
            Route::Members {
                group: "abc".into(),
                transitive: true
            }
        );
        assert_eq!(
            Route::parse(&Method::POST, "/v1.0/applications(appId='x')/addKey").unwrap(),
            Route::AddKey(AppRef::AppId("x".into()))
        );
        assert_eq!(
            Route::parse(&Method::POST, "/v1.0/applications/o1/removeKey").unwrap(),
            Route::RemoveKey(AppRef::ObjectId("o1".into()))
        );
    }

    #[test]
    fn refuses_unknown_segments_versions_and_methods() {
        assert_eq!(
            Route::parse(&Method::GET, "/v1.0/devices")
                .unwrap_err()
                .status,
            StatusCode::BAD_REQUEST
        );
        assert!(Route::parse(&Method::GET, "/beta/users").is_err());
        assert_eq!(
            Route::parse(&Method::POST, "/v1.0/users")
                .unwrap_err()
                .status,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn top_must_be_within_graph_limits() {
        assert_eq!(Params::parse("$top=999").top().unwrap(), Some(999));
        assert!(Params::parse("$top=1000").top().is_err());
        assert!(Params::parse("$top=0").top().is_err());
        assert!(Params::parse("%24top=abc").top().is_err());
    }
}
