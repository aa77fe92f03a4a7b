//! Connections in a grant: which other systems a plugin may call, and on
//! each, which method and path ([`Route`]). A request is matched on its
//! normalised path ([`RequestPath::parse`]), which refuses every spelling
//! that could make a path mean something other than it reads: encoded
//! separators and dots, `.` and `..` segments, empty segments, backslashes,
//! absolute-form and userinfo tricks.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The methods a route may name. `CONNECT` and `TRACE` are never allowed.
pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Headers a plugin may never set on a connection's request: credentials
/// (the host adds the connection's own), and the method overrides some
/// servers honour, which would turn an allowed `POST` into a `DELETE`.
pub const REFUSED_HEADERS: [&str; 9] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "forwarded",
    "x-forwarded-host",
];

/// Query parameters a plugin may never send: the method override of Rails,
/// Laravel and others.
pub const REFUSED_QUERY: [&str; 1] = ["_method"];

/// Whether `method` only reads (it is sent in a dry run and needs no plan).
pub fn reads_only(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// One route of a connection: `POST /api/Tickets`, `GET /api/Tickets/*`.
///
/// In the path, `*` is exactly one segment and a final `**` is any number
/// of segments (none included); everything else matches itself, byte for
/// byte, after the request's path is normalised.
///
/// ```
/// use levelhost_core::route::{RequestPath, Route};
/// let route: Route = "GET /api/Tickets/*".parse().unwrap();
/// let path = |p: &str| RequestPath::parse(p).unwrap();
/// assert!(route.matches("GET", &path("/api/Tickets/42")));
/// assert!(!route.matches("GET", &path("/api/Tickets/42/notes")));
/// assert!(!route.matches("DELETE", &path("/api/Tickets/42")));
/// assert!(RequestPath::parse("/api/Tickets/%2e%2e/Users").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    method: String,
    segments: Vec<String>,
    rest: bool,
}

/// A route or request path that cannot be allowed, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RouteError(pub String);

impl FromStr for Route {
    type Err = RouteError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| RouteError(format!("route {text:?}: {why}"));
        let (method, path) = text
            .trim()
            .split_once(' ')
            .ok_or_else(|| bad("write it as METHOD /path, such as \"POST /api/Tickets\""))?;
        let method = method.trim();
        if !METHODS.contains(&method) {
            return Err(bad(&format!(
                "the method must be one of {} (in capitals)",
                METHODS.join(", ")
            )));
        }
        let path = path.trim();
        let parsed = RequestPath::parse(path).map_err(|e| bad(&e.0))?;
        if parsed.query.is_some() {
            return Err(bad("a route names a path only, without a query"));
        }
        let mut segments = parsed.segments;
        let rest = segments.last().is_some_and(|s| s == "**");
        if rest {
            segments.pop();
        }
        if segments.iter().any(|s| s == "**") {
            return Err(bad("** may only be the last segment"));
        }
        if segments
            .iter()
            .any(|s| s.contains('*') && s.as_str() != "*")
        {
            return Err(bad("* stands for a whole segment, not part of one"));
        }
        Ok(Self {
            method: method.to_owned(),
            segments,
            rest,
        })
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} /{}", self.method, self.segments.join("/"))?;
        if self.rest {
            write!(f, "{}**", if self.segments.is_empty() { "" } else { "/" })?;
        }
        Ok(())
    }
}

impl Serialize for Route {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Route {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Route {
    /// Whether a request with `method` (any case) to `path` is this route.
    pub fn matches(&self, method: &str, path: &RequestPath) -> bool {
        if !self.method.eq_ignore_ascii_case(method) {
            return false;
        }
        let got = &path.segments;
        if got.len() < self.segments.len() || (!self.rest && got.len() != self.segments.len()) {
            return false;
        }
        self.segments
            .iter()
            .zip(got)
            .all(|(want, seg)| want == "*" || want == seg)
    }

    /// The route's method.
    pub fn method(&self) -> &str {
        &self.method
    }
}

/// A request's path, checked and split into decoded segments, with its
/// query as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath {
    /// The path as the plugin wrote it (percent-encoding kept), which is
    /// what is sent once it is allowed.
    pub raw: String,
    /// Its segments, percent-decoded.
    pub segments: Vec<String>,
    /// The query, without the `?`.
    pub query: Option<String>,
}

impl RequestPath {
    /// Checks and splits a request target. Refused: anything but a path
    /// starting with one `/` (absolute-form, authority-form, userinfo),
    /// backslashes, fragments, control characters, empty segments (`//`),
    /// `.` and `..` segments, and percent-encoded `/`, `\`, `.`, `%` or
    /// control characters (which would decode into one of the above).
    pub fn parse(target: &str) -> Result<Self, RouteError> {
        let refuse = |why: &str| Err(RouteError(format!("the path {target:?} is refused: {why}")));
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q.to_owned())),
            None => (target, None),
        };
        if !path.starts_with('/') {
            return refuse(
                "it must start with /, as a path on the connection (no scheme, host or user)",
            );
        }
        if path.starts_with("//") {
            return refuse("// would name another host");
        }
        if target.contains('#') {
            return refuse("a fragment (#) is not sent");
        }
        if target.chars().any(|c| c.is_control() || c == ' ') {
            return refuse("it holds a space or a control character");
        }
        if path.contains('\\') {
            return refuse("backslashes are not path separators here");
        }
        let mut segments = Vec::new();
        let body = &path[1..];
        if !body.is_empty() {
            let parts: Vec<&str> = body.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                let last = i + 1 == parts.len();
                if part.is_empty() {
                    if last {
                        // A trailing slash: `/api/Tickets/` is its own path.
                        segments.push(String::new());
                        continue;
                    }
                    return refuse("empty segments (//) are refused");
                }
                let decoded = percent_decode(part).ok_or_else(|| {
                    RouteError(format!(
                        "the path {target:?} is refused: {part:?} is not valid percent-encoded UTF-8"
                    ))
                })?;
                if decoded
                    .chars()
                    .any(|c| matches!(c, '/' | '\\' | '%') || c.is_control())
                    || (decoded.contains('.') && part.to_ascii_lowercase().contains("%2e"))
                {
                    return refuse("an encoded /, \\, %, . or control character is refused");
                }
                if decoded == "." || decoded == ".." {
                    return refuse(". and .. segments are refused");
                }
                segments.push(decoded);
            }
        }
        if let Some(q) = &query {
            for pair in q.split('&') {
                let name = pair.split('=').next().unwrap_or_default();
                let name = percent_decode(name).unwrap_or_else(|| name.to_owned());
                if REFUSED_QUERY.contains(&name.to_ascii_lowercase().as_str()) {
                    return refuse(&format!(
                        "the query parameter {name:?} overrides the method"
                    ));
                }
            }
        }
        Ok(Self {
            raw: path.to_owned(),
            segments,
            query,
        })
    }

    /// The path, decoded, as routes are written (`/api/Tickets/42`).
    pub fn decoded(&self) -> String {
        format!("/{}", self.segments.join("/"))
    }
}

/// Percent-decodes `text`; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What a grant allows on one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionGrant {
    /// The routes the plugin may call; any other request is denied.
    pub routes: Vec<Route>,
}

/// A grant's connections, by name.
pub type Connections = BTreeMap<String, ConnectionGrant>;

/// The audit and plan target naming a connection.
pub fn connection_target(name: &str) -> String {
    format!("connection:{name}")
}

/// The connection a record's targets name ([`connection_target`]), if any.
pub fn connection_of(targets: &[String]) -> Option<&str> {
    targets.iter().find_map(|t| t.strip_prefix("connection:"))
}

/// The request a record's targets name ([`request_target`]) as
/// `METHOD /path`, if any.
pub fn request_of(targets: &[String]) -> Option<&str> {
    targets.iter().find_map(|t| t.strip_prefix("http:"))
}

/// The audit and plan target naming a request: `http:POST /api/Tickets`.
pub fn request_target(method: &str, path: &RequestPath) -> String {
    format!("http:{method} {}", path.decoded())
}

/// The operation name of an outbound request in the audit and in plans.
pub const HTTP_OPERATION: &str = "http-request";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_records_targets_give_back_its_connection_and_request() {
        let path = RequestPath::parse("/api/Tickets?x=1").unwrap();
        let targets = vec![connection_target("psa"), request_target("POST", &path)];
        assert_eq!(connection_of(&targets), Some("psa"));
        assert_eq!(request_of(&targets), Some("POST /api/Tickets"));
        assert_eq!(connection_of(&["tag:x".to_owned()]), None);
    }

    fn route(text: &str) -> Route {
        text.parse().unwrap()
    }

    fn path(text: &str) -> RequestPath {
        RequestPath::parse(text).unwrap()
    }

    #[test]
    fn routes_match_whole_segments() {
        let exact = route("POST /api/Tickets");
        assert!(exact.matches("POST", &path("/api/Tickets")));
        assert!(exact.matches("post", &path("/api/Tickets?x=1")));
        assert!(!exact.matches("POST", &path("/api/Tickets/1")));
        assert!(!exact.matches("POST", &path("/api/TicketsX")));
        assert!(!exact.matches("POST", &path("/api/tickets")));
        let rest = route("GET /api/**");
        assert!(rest.matches("GET", &path("/api")));
        assert!(rest.matches("GET", &path("/api/a/b/c")));
        assert!(!rest.matches("GET", &path("/apix")));
        let root = route("POST /");
        assert!(root.matches("POST", &path("/")));
        assert!(!root.matches("POST", &path("/x")));
        assert_eq!(
            route("GET /api/Tickets/*").to_string(),
            "GET /api/Tickets/*"
        );
        assert_eq!(route("GET /**").to_string(), "GET /**");
        // An encoded character that is not a separator still matches its decoded form.
        assert!(route("GET /api/a%20b").matches("GET", &path("/api/a%20b")));
        assert!(route("GET /api/*").matches("GET", &path("/api/a%20b")));
    }

    #[test]
    fn tricky_paths_are_refused() {
        for bad in [
            "/api/Tickets/../Users",
            "/api/./Tickets",
            "/api//Tickets",
            "/api/%2e%2e/Users",
            "/api/%2E%2E/Users",
            "/api/.%2e/Users",
            "/api/Tickets%2fUsers",
            "/api/Tickets%5cUsers",
            "/api\\Users",
            "/api/%00",
            "/api/%zz",
            "/api/%c0%ae%c0%ae",
            "//evil.example/api",
            "http://evil.example/api",
            "https://user:pw@evil.example/api",
            "evil.example:443",
            "/api/Tickets#frag",
            "/api/Tickets?_method=DELETE",
            "/api/Tickets?a=1&_METHOD=DELETE",
            "/api/Tick ets",
            "/api/\r\nX-Evil: 1",
        ] {
            assert!(RequestPath::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn bad_routes_say_why() {
        for (text, why) in [
            ("/api/Tickets", "METHOD /path"),
            ("FETCH /api", "the method must be one of"),
            ("get /api", "in capitals"),
            ("GET /api/**/x", "** may only be the last"),
            ("GET /api/Ti*", "whole segment"),
            ("GET /api?x=1", "without a query"),
            ("GET /api/../x", ".. segments"),
        ] {
            let err = text.parse::<Route>().unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
    }
}
