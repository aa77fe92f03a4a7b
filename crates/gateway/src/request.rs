//! A client's HTTP request read into the typed operation a plugin's host call
//! is: the same `level:api` arguments, so the same gate decides. Only Level's
//! own paths, methods, parameters and body fields are read; anything else is
//! refused here and never forwarded.

use std::collections::BTreeMap;

use levelhost_runtime::bindings::alerts::{AlertFilter, AlertStatus};
use levelhost_runtime::bindings::automations::TriggerRequest;
use levelhost_runtime::bindings::custom_field_values::{
    ValueAssignment, ValueFilter, ValueRemoval,
};
use levelhost_runtime::bindings::custom_fields::{CustomFieldUpdate, NewCustomField};
use levelhost_runtime::bindings::devices::{
    DeviceFilter, DeviceInclude, DeviceUpdate, GroupChange, GroupFilter,
};
use levelhost_runtime::bindings::groups::{GroupUpdate, NewGroup, ParentChange, ParentFilter};
use levelhost_runtime::bindings::types::PageRequest;

/// One of Level's operations, with its arguments as a plugin would pass them.
#[derive(Debug, Clone)]
pub enum Request {
    /// `GET /v2/devices`.
    ListDevices(DeviceFilter, DeviceInclude, PageRequest),
    /// `GET /v2/devices/{id}`.
    GetDevice(String, DeviceInclude),
    /// `PATCH /v2/devices/{id}`.
    UpdateDevice(String, DeviceUpdate),
    /// `DELETE /v2/devices/{id}`.
    DeleteDevice(String),
    /// `GET /v2/groups`.
    ListGroups(Option<ParentFilter>, PageRequest),
    /// `GET /v2/groups/{id}`.
    GetGroup(String),
    /// `POST /v2/groups`.
    CreateGroup(NewGroup),
    /// `PATCH /v2/groups/{id}`.
    UpdateGroup(String, GroupUpdate),
    /// `DELETE /v2/groups/{id}`.
    DeleteGroup(String),
    /// `POST /v2/groups/{id}/devices`.
    AssignDevices(String, Vec<String>),
    /// `DELETE /v2/groups/{id}/devices`.
    RemoveDevices(String, Vec<String>),
    /// `GET /v2/tags`.
    ListTags(Option<String>, PageRequest),
    /// `GET /v2/tags/{id}`.
    GetTag(String),
    /// `POST /v2/tags`.
    CreateTag(String),
    /// `PATCH /v2/tags/{id}`.
    UpdateTag(String, String),
    /// `DELETE /v2/tags/{id}`.
    DeleteTag(String),
    /// `POST /v2/tags/{id}/devices`.
    TagDevices(String, Vec<String>),
    /// `DELETE /v2/tags/{id}/devices`.
    UntagDevices(String, Vec<String>),
    /// `GET /v2/alerts`.
    ListAlerts(AlertFilter, PageRequest),
    /// `GET /v2/alerts/{id}`.
    GetAlert(String),
    /// `POST /v2/alerts/{id}/resolve`.
    ResolveAlert(String),
    /// `GET /v2/custom_fields`.
    ListCustomFields(PageRequest),
    /// `GET /v2/custom_fields/{id}`.
    GetCustomField(String),
    /// `POST /v2/custom_fields`.
    CreateCustomField(NewCustomField),
    /// `PATCH /v2/custom_fields/{id}`.
    UpdateCustomField(String, CustomFieldUpdate),
    /// `DELETE /v2/custom_fields/{id}`.
    DeleteCustomField(String),
    /// `GET /v2/custom_field_values`.
    ListValues(ValueFilter, PageRequest),
    /// `PATCH /v2/custom_field_values`.
    SetValue(ValueAssignment),
    /// `DELETE /v2/custom_field_values`.
    RemoveValue(ValueRemoval),
    /// `POST /v2/automations/webhooks/{token}`.
    Trigger(String, TriggerRequest),
}

/// Why a request was not read: Level's status and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct Refused {
    /// The HTTP status Level answers such a request with.
    pub status: u16,
    /// What was wrong, as Level's `{"error": ...}` says it.
    pub message: String,
}

fn not_found() -> Refused {
    Refused {
        status: 404,
        message: "Not found".to_owned(),
    }
}

fn bad(message: impl Into<String>) -> Refused {
    Refused {
        status: 400,
        message: message.into(),
    }
}

/// The query string's parameters; a parameter given twice is refused.
struct Query(BTreeMap<String, String>);

impl Query {
    fn parse(query: Option<&str>) -> Result<Self, Refused> {
        let mut out = BTreeMap::new();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            if out.insert(k.to_string(), v.to_string()).is_some() {
                return Err(bad(format!("parameter {k} is given more than once")));
            }
        }
        Ok(Self(out))
    }

    /// Refuses any parameter not in `known` (paging's are always known).
    fn only(&self, known: &[&str]) -> Result<(), Refused> {
        for name in self.0.keys() {
            if !known.contains(&name.as_str())
                && !["limit", "starting_after", "ending_before"].contains(&name.as_str())
            {
                return Err(bad(format!("unknown parameter {name}")));
            }
        }
        Ok(())
    }

    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    /// A boolean flag as Level reads one: `true` and `1` are on.
    fn flag(&self, name: &str) -> Result<bool, Refused> {
        match self.0.get(name).map(String::as_str) {
            None | Some("false" | "0") => Ok(false),
            Some("true" | "1") => Ok(true),
            Some(other) => Err(bad(format!("{name} must be true or false, not {other:?}"))),
        }
    }

    fn page(&self) -> Result<PageRequest, Refused> {
        let limit = match self.0.get("limit") {
            None => None,
            Some(text) => match text.parse::<u32>() {
                Ok(n) if (1..=100).contains(&n) => Some(n),
                _ => return Err(bad("limit must be between 1 and 100")),
            },
        };
        Ok(PageRequest {
            limit,
            starting_after: self.get("starting_after"),
            ending_before: self.get("ending_before"),
        })
    }
}

const INCLUDES: [(&str, DeviceInclude); 8] = [
    ("include_operating_system", DeviceInclude::OPERATING_SYSTEM),
    ("include_cpus", DeviceInclude::CPUS),
    ("include_memory", DeviceInclude::MEMORY),
    ("include_disks", DeviceInclude::DISKS),
    ("include_disk_partitions", DeviceInclude::DISK_PARTITIONS),
    (
        "include_network_interfaces",
        DeviceInclude::NETWORK_INTERFACES,
    ),
    ("include_motherboard", DeviceInclude::MOTHERBOARD),
    ("include_security", DeviceInclude::SECURITY),
];

fn includes(query: &Query) -> Result<DeviceInclude, Refused> {
    let mut sections = DeviceInclude::empty();
    for (name, flag) in INCLUDES {
        if query.flag(name)? {
            sections |= flag;
        }
    }
    Ok(sections)
}

/// A JSON body's fields; unknown ones are refused.
struct Body(serde_json::Map<String, serde_json::Value>);

impl Body {
    fn parse(body: &[u8], known: &[&str]) -> Result<Self, Refused> {
        let value: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_slice(body)
                .map_err(|e| bad(format!("the body is not valid JSON: {e}")))?
        };
        let serde_json::Value::Object(map) = value else {
            return Err(bad("the body must be a JSON object"));
        };
        for name in map.keys() {
            if !known.contains(&name.as_str()) {
                return Err(bad(format!("unknown field {name}")));
            }
        }
        Ok(Self(map))
    }

    fn string(&self, name: &str) -> Result<Option<String>, Refused> {
        match self.0.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(format!("{name} must be a string"))),
        }
    }

    fn required(&self, name: &str) -> Result<String, Refused> {
        self.string(name)?
            .ok_or_else(|| bad(format!("{name} is required")))
    }

    fn flag(&self, name: &str) -> Result<bool, Refused> {
        match self.0.get(name) {
            None | Some(serde_json::Value::Null) => Ok(false),
            Some(serde_json::Value::Bool(b)) => Ok(*b),
            Some(_) => Err(bad(format!("{name} must be true or false"))),
        }
    }

    fn optional_flag(&self, name: &str) -> Result<Option<bool>, Refused> {
        match self.0.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(bad(format!("{name} must be true or false"))),
        }
    }

    fn ids(&self, name: &str) -> Result<Vec<String>, Refused> {
        let Some(serde_json::Value::Array(items)) = self.0.get(name) else {
            return Err(bad(format!("{name} is required: an array of ids")));
        };
        items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(format!("{name} must hold strings")))
            })
            .collect()
    }
}

impl Request {
    /// Reads `method path?query` with `body` as the operation Level would
    /// run, or says why Level would refuse it (or levelhost does not serve it).
    pub fn parse(
        method: &str,
        path: &str,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Self, Refused> {
        let query = Query::parse(query)?;
        let segments: Vec<&str> = path
            .strip_prefix("/v2/")
            .ok_or_else(not_found)?
            .split('/')
            .collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(not_found());
        }
        let id = |i: usize| -> Result<String, Refused> {
            let raw = segments.get(i).ok_or_else(not_found)?;
            let decoded = percent_encoding::percent_decode_str(raw)
                .decode_utf8()
                .map_err(|_| not_found())?
                .into_owned();
            level_api::check_id(&decoded).map_err(|_| not_found())?;
            Ok(decoded)
        };
        let no_query = || query.only(&[]);
        let request = match (method, segments.as_slice()) {
            ("GET", ["devices"]) => {
                let mut known: Vec<&str> = INCLUDES.iter().map(|(n, _)| *n).collect();
                known.extend([
                    "group_id",
                    "ancestor_group_id",
                    "tag_id",
                    "hostname",
                    "serial_number",
                ]);
                query.only(&known)?;
                let group = match (query.get("group_id"), query.get("ancestor_group_id")) {
                    (Some(_), Some(_)) => {
                        return Err(bad("give group_id or ancestor_group_id, not both"));
                    }
                    (Some(g), None) if g == "null" => Some(GroupFilter::Ungrouped),
                    (Some(g), None) => Some(GroupFilter::Direct(g)),
                    (None, Some(g)) => Some(GroupFilter::Subtree(g)),
                    (None, None) => None,
                };
                Self::ListDevices(
                    DeviceFilter {
                        group,
                        tag_id: query.get("tag_id"),
                        hostname: query.get("hostname"),
                        serial_number: query.get("serial_number"),
                    },
                    includes(&query)?,
                    query.page()?,
                )
            }
            ("GET", ["devices", _]) => {
                let known: Vec<&str> = INCLUDES.iter().map(|(n, _)| *n).collect();
                query.only(&known)?;
                Self::GetDevice(id(1)?, includes(&query)?)
            }
            ("PATCH", ["devices", _]) => {
                no_query()?;
                let body = Body::parse(body, &["name", "notes", "group_id"])?;
                let group = match body.0.get("group_id") {
                    None => None,
                    Some(serde_json::Value::Null) => Some(GroupChange::Ungroup),
                    Some(serde_json::Value::String(g)) => Some(GroupChange::MoveTo(g.clone())),
                    Some(_) => return Err(bad("group_id must be a string or null")),
                };
                Self::UpdateDevice(
                    id(1)?,
                    DeviceUpdate {
                        name: body.string("name")?,
                        notes: body.string("notes")?,
                        group,
                    },
                )
            }
            ("DELETE", ["devices", _]) => {
                no_query()?;
                Self::DeleteDevice(id(1)?)
            }
            ("POST", ["groups"]) => {
                no_query()?;
                let body = Body::parse(body, &["name", "parent_id"])?;
                Self::CreateGroup(NewGroup {
                    name: body.required("name")?,
                    parent_id: body.string("parent_id")?,
                })
            }
            ("PATCH", ["groups", _]) => {
                no_query()?;
                let body = Body::parse(body, &["name", "parent_id", "custom_fields"])?;
                let parent = match body.0.get("parent_id") {
                    None => None,
                    Some(serde_json::Value::Null) => Some(ParentChange::MakeRoot),
                    Some(serde_json::Value::String(p)) => Some(ParentChange::MoveUnder(p.clone())),
                    Some(_) => return Err(bad("parent_id must be a string or null")),
                };
                let custom_fields = match body.0.get("custom_fields") {
                    None | Some(serde_json::Value::Null) => Vec::new(),
                    Some(serde_json::Value::Object(map)) => map
                        .iter()
                        .map(|(k, v)| match v {
                            serde_json::Value::String(v) => Ok((k.clone(), v.clone())),
                            _ => Err(bad("custom_fields values must be strings")),
                        })
                        .collect::<Result<_, _>>()?,
                    Some(_) => return Err(bad("custom_fields must be an object")),
                };
                Self::UpdateGroup(
                    id(1)?,
                    GroupUpdate {
                        name: body.string("name")?,
                        parent,
                        custom_fields,
                    },
                )
            }
            ("DELETE", ["groups", _]) => {
                no_query()?;
                Self::DeleteGroup(id(1)?)
            }
            ("POST", ["groups", _, "devices"]) => {
                no_query()?;
                Self::AssignDevices(
                    id(1)?,
                    Body::parse(body, &["device_ids"])?.ids("device_ids")?,
                )
            }
            ("DELETE", ["groups", _, "devices"]) => {
                no_query()?;
                Self::RemoveDevices(
                    id(1)?,
                    Body::parse(body, &["device_ids"])?.ids("device_ids")?,
                )
            }
            ("GET", ["groups"]) => {
                query.only(&["parent_id"])?;
                let parent = query.get("parent_id").map(|p| {
                    if p == "null" {
                        ParentFilter::Root
                    } else {
                        ParentFilter::ChildrenOf(p)
                    }
                });
                Self::ListGroups(parent, query.page()?)
            }
            ("GET", ["groups", _]) => {
                no_query()?;
                Self::GetGroup(id(1)?)
            }
            ("GET", ["tags"]) => {
                query.only(&["device_id"])?;
                Self::ListTags(query.get("device_id"), query.page()?)
            }
            ("GET", ["tags", _]) => {
                no_query()?;
                Self::GetTag(id(1)?)
            }
            ("POST", ["tags"]) => {
                no_query()?;
                Self::CreateTag(Body::parse(body, &["name"])?.required("name")?)
            }
            ("PATCH", ["tags", _]) => {
                no_query()?;
                Self::UpdateTag(id(1)?, Body::parse(body, &["name"])?.required("name")?)
            }
            ("DELETE", ["tags", _]) => {
                no_query()?;
                Self::DeleteTag(id(1)?)
            }
            ("POST", ["tags", _, "devices"]) => {
                no_query()?;
                Self::TagDevices(
                    id(1)?,
                    Body::parse(body, &["device_ids"])?.ids("device_ids")?,
                )
            }
            ("DELETE", ["tags", _, "devices"]) => {
                no_query()?;
                Self::UntagDevices(
                    id(1)?,
                    Body::parse(body, &["device_ids"])?.ids("device_ids")?,
                )
            }
            ("GET", ["alerts"]) => {
                query.only(&["device_id", "status"])?;
                let status = match query.get("status").as_deref() {
                    None => None,
                    Some("active") => Some(AlertStatus::Active),
                    Some("resolved") => Some(AlertStatus::Resolved),
                    Some(other) => {
                        return Err(bad(format!(
                            "status must be active or resolved, not {other:?}"
                        )));
                    }
                };
                Self::ListAlerts(
                    AlertFilter {
                        device_id: query.get("device_id"),
                        status,
                    },
                    query.page()?,
                )
            }
            ("GET", ["alerts", _]) => {
                no_query()?;
                Self::GetAlert(id(1)?)
            }
            ("POST", ["alerts", _, "resolve"]) => {
                no_query()?;
                Body::parse(body, &[])?;
                Self::ResolveAlert(id(1)?)
            }
            ("GET", ["custom_fields"]) => {
                query.only(&[])?;
                Self::ListCustomFields(query.page()?)
            }
            ("GET", ["custom_fields", _]) => {
                no_query()?;
                Self::GetCustomField(id(1)?)
            }
            ("POST", ["custom_fields"]) => {
                no_query()?;
                // Level accepts and ignores a default_value.
                let body = Body::parse(body, &["name", "admin_only", "default_value"])?;
                Self::CreateCustomField(NewCustomField {
                    name: body.required("name")?,
                    admin_only: body.flag("admin_only")?,
                })
            }
            ("PATCH", ["custom_fields", _]) => {
                no_query()?;
                let body = Body::parse(body, &["name", "admin_only", "default_value"])?;
                Self::UpdateCustomField(
                    id(1)?,
                    CustomFieldUpdate {
                        name: body.string("name")?,
                        admin_only: body.optional_flag("admin_only")?,
                    },
                )
            }
            ("DELETE", ["custom_fields", _]) => {
                no_query()?;
                Self::DeleteCustomField(id(1)?)
            }
            ("POST", ["automations", "webhooks", _]) => {
                no_query()?;
                // Any other key of the body becomes an automation variable.
                let value: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
                    serde_json::json!({})
                } else {
                    serde_json::from_slice(body)
                        .map_err(|e| bad(format!("the body is not valid JSON: {e}")))?
                };
                let serde_json::Value::Object(mut map) = value else {
                    return Err(bad("The body must be a JSON object"));
                };
                let device_ids = match map.remove("device_ids") {
                    None | Some(serde_json::Value::Null) => Vec::new(),
                    Some(serde_json::Value::Array(items)) => items
                        .into_iter()
                        .map(|v| match v {
                            serde_json::Value::String(s) => Ok(s),
                            _ => Err(bad("device_ids must hold strings")),
                        })
                        .collect::<Result<_, _>>()?,
                    Some(_) => return Err(bad("device_ids must be an array of ids")),
                };
                Self::Trigger(
                    id(2)?,
                    TriggerRequest {
                        device_ids,
                        variables: (!map.is_empty())
                            .then(|| serde_json::Value::Object(map).to_string()),
                    },
                )
            }
            ("GET", ["custom_field_values"]) => {
                query.only(&["assigned_to_id", "custom_field_id"])?;
                Self::ListValues(
                    ValueFilter {
                        assigned_to_id: query.get("assigned_to_id"),
                        custom_field_id: query.get("custom_field_id"),
                    },
                    query.page()?,
                )
            }
            ("PATCH", ["custom_field_values"]) => {
                no_query()?;
                let body = Body::parse(
                    body,
                    &["custom_field_id", "assigned_to_id", "value", "force"],
                )?;
                Self::SetValue(ValueAssignment {
                    custom_field_id: body.required("custom_field_id")?,
                    assigned_to_id: body.string("assigned_to_id")?,
                    value: body.required("value")?,
                    force: body.flag("force")?,
                })
            }
            ("DELETE", ["custom_field_values"]) => {
                // Some clients send these as query parameters (a DELETE without a body).
                let body = Body::parse(body, &["custom_field_id", "assigned_to_id", "force"])?;
                query.only(&["custom_field_id", "assigned_to_id", "force"])?;
                Self::RemoveValue(ValueRemoval {
                    custom_field_id: match body.string("custom_field_id")? {
                        Some(id) => id,
                        None => query
                            .get("custom_field_id")
                            .ok_or_else(|| bad("custom_field_id is required"))?,
                    },
                    assigned_to_id: body
                        .string("assigned_to_id")?
                        .or_else(|| query.get("assigned_to_id")),
                    force: body.flag("force")? || query.flag("force")?,
                })
            }
            _ => return Err(not_found()),
        };
        Ok(request)
    }

    /// Whether it changes Level.
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Self::UpdateDevice(..)
                | Self::DeleteDevice(..)
                | Self::CreateGroup(..)
                | Self::UpdateGroup(..)
                | Self::DeleteGroup(..)
                | Self::AssignDevices(..)
                | Self::RemoveDevices(..)
                | Self::UpdateTag(..)
                | Self::DeleteTag(..)
                | Self::CreateCustomField(..)
                | Self::UpdateCustomField(..)
                | Self::DeleteCustomField(..)
                | Self::Trigger(..)
                | Self::CreateTag(..)
                | Self::TagDevices(..)
                | Self::UntagDevices(..)
                | Self::ResolveAlert(..)
                | Self::SetValue(..)
                | Self::RemoveValue(..)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_paths_parse_and_anything_else_is_refused() {
        let ok = |m: &str, p: &str, q: Option<&str>, b: &str| {
            Request::parse(m, p, q, b.as_bytes()).map(|r| format!("{r:?}"))
        };
        assert!(
            ok(
                "GET",
                "/v2/devices",
                Some("limit=5&ancestor_group_id=g1&include_cpus=true"),
                ""
            )
            .unwrap()
            .contains("Subtree(\"g1\")")
        );
        assert!(
            ok("GET", "/v2/devices", Some("group_id=null"), "")
                .unwrap()
                .contains("Ungrouped")
        );
        assert!(
            ok("PATCH", "/v2/devices/d1", None, r#"{"group_id":null}"#)
                .unwrap()
                .contains("Ungroup")
        );
        assert!(
            ok(
                "POST",
                "/v2/tags/t1/devices",
                None,
                r#"{"device_ids":["d1"]}"#
            )
            .is_ok()
        );
        for (m, p, q, b, status, says) in [
            ("GET", "/v2/devices", Some("limit=0"), "", 400, "limit"),
            (
                "GET",
                "/v2/devices",
                Some("sort=name"),
                "",
                400,
                "unknown parameter sort",
            ),
            (
                "GET",
                "/v2/devices",
                Some("limit=5&limit=6"),
                "",
                400,
                "more than once",
            ),
            ("GET", "/v2/organizations", None, "", 404, "Not found"),
            ("GET", "/v1/devices", None, "", 404, "Not found"),
            ("PUT", "/v2/devices/d1", None, "{}", 404, "Not found"),
            ("GET", "/v2/devices//x", None, "", 404, "Not found"),
            (
                "PATCH",
                "/v2/devices/d1",
                None,
                r#"{"hostname":"x"}"#,
                400,
                "unknown field hostname",
            ),
            (
                "PATCH",
                "/v2/devices/d1",
                None,
                "not json",
                400,
                "not valid JSON",
            ),
            (
                "POST",
                "/v2/tags/t1/devices",
                None,
                r#"{"device_id":"d1"}"#,
                400,
                "unknown field",
            ),
            ("GET", "/v2/devices/%2E%2E", None, "", 404, "Not found"),
        ] {
            let refused = Request::parse(m, p, q, b.as_bytes()).unwrap_err();
            assert_eq!(refused.status, status, "{m} {p} {q:?}: {refused}");
            assert!(refused.message.contains(says), "{m} {p}: {refused}");
        }
    }
}
