//! Performs one `level:api` operation named by the input and returns
//! `{"ok": result}` or `{"error": {"kind", "message"}}`. The run itself
//! succeeds either way, so tests can check every error case.

use levelhost_sdk::bindings::exports::level::api::handler::{Guest, Invocation, RunError};
use levelhost_sdk::bindings::level::api::types::{Error, PageRequest};
use levelhost_sdk::bindings::level::api::{
    alerts, automations, custom_field_values as values, custom_fields, devices, groups, tags,
};
use serde_json::{Value, json};

struct ApiCall;

fn s(args: &Value, key: &str) -> Option<String> {
    args.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn req(args: &Value, key: &str) -> String {
    s(args, key).unwrap_or_default()
}

fn b(args: &Value, key: &str) -> bool {
    args.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn ids(args: &Value) -> Vec<String> {
    args.get("device_ids")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn page(args: &Value) -> PageRequest {
    PageRequest {
        limit: args.get("limit").and_then(Value::as_u64).map(|l| l as u32),
        starting_after: s(args, "after"),
        ending_before: s(args, "before"),
    }
}

fn alert(a: alerts::Alert) -> Value {
    json!({"id": a.id, "device_id": a.device_id, "name": a.name, "is_resolved": a.is_resolved,
           "resolved_at": a.resolved_at, "severity": format!("{:?}", a.severity)})
}

fn field(f: custom_fields::CustomField) -> Value {
    json!({"id": f.id, "name": f.name, "reference": f.reference, "admin_only": f.admin_only})
}

fn value(v: values::CustomFieldValue) -> Value {
    json!({"custom_field_id": v.custom_field_id, "custom_field_name": v.custom_field_name,
           "assigned_to_id": v.assigned_to_id, "value": v.value})
}

fn device(d: devices::Device) -> Value {
    json!({"id": d.id, "hostname": d.hostname, "nickname": d.nickname, "notes": d.notes,
           "group_id": d.group_id, "group_name": d.group_name, "tags": d.tags, "online": d.online,
           "platform": d.platform.map(|p| format!("{p:?}")),
           "operating_system": d.operating_system.and_then(|o| o.full_operating_system)})
}

fn group(g: groups::Group) -> Value {
    json!({"id": g.id, "name": g.name, "parent_id": g.parent_id, "child_ids": g.child_ids,
           "device_count": g.device_count, "descendent_device_count": g.descendent_device_count,
           "custom_fields": g.custom_fields.into_iter().map(|(k, v)| (k, Value::String(v))).collect::<serde_json::Map<_, _>>()})
}

fn tag(t: tags::Tag) -> Value {
    json!({"id": t.id, "name": t.name, "device_count": t.device_count})
}

fn list<T>(items: Vec<T>, has_more: bool, f: fn(T) -> Value) -> Value {
    json!({"items": items.into_iter().map(f).collect::<Vec<_>>(), "has_more": has_more})
}

fn call(op: &str, a: &Value) -> Result<Value, Error> {
    let include = if b(a, "include_os") {
        devices::DeviceInclude::OPERATING_SYSTEM
    } else {
        devices::DeviceInclude::empty()
    };
    Ok(match op {
        "list-alerts" => {
            let filter = alerts::AlertFilter {
                device_id: s(a, "device_id"),
                status: s(a, "status").map(|st| {
                    if st == "resolved" {
                        alerts::AlertStatus::Resolved
                    } else {
                        alerts::AlertStatus::Active
                    }
                }),
            };
            let p = alerts::list_alerts(&filter, &page(a))?;
            list(p.items, p.has_more, alert)
        }
        "get-alert" => alert(alerts::get_alert(&req(a, "id"))?),
        "resolve-alert" => alert(alerts::resolve_alert(&req(a, "id"))?),
        "list-custom-fields" => {
            let p = custom_fields::list_custom_fields(&page(a))?;
            list(p.items, p.has_more, field)
        }
        "get-custom-field" => field(custom_fields::get_custom_field(&req(a, "id"))?),
        "create-custom-field" => field(custom_fields::create_custom_field(
            &custom_fields::NewCustomField {
                name: req(a, "name"),
                admin_only: b(a, "admin_only"),
            },
        )?),
        "update-custom-field" => field(custom_fields::update_custom_field(
            &req(a, "id"),
            &custom_fields::CustomFieldUpdate {
                name: s(a, "name"),
                admin_only: a.get("admin_only").and_then(Value::as_bool),
            },
        )?),
        "delete-custom-field" => {
            custom_fields::delete_custom_field(&req(a, "id"))?;
            Value::Null
        }
        "list-values" => {
            let p = values::list_values(
                &values::ValueFilter {
                    assigned_to_id: s(a, "assigned_to_id"),
                    custom_field_id: s(a, "custom_field_id"),
                },
                &page(a),
            )?;
            list(p.items, p.has_more, value)
        }
        "set-value" => value(values::set_value(&values::ValueAssignment {
            custom_field_id: req(a, "custom_field_id"),
            assigned_to_id: s(a, "assigned_to_id"),
            value: req(a, "value"),
            force: b(a, "force"),
        })?),
        "remove-value" => {
            values::remove_value(&values::ValueRemoval {
                custom_field_id: req(a, "custom_field_id"),
                assigned_to_id: s(a, "assigned_to_id"),
                force: b(a, "force"),
            })?;
            Value::Null
        }
        "list-devices" => {
            let group = if let Some(g) = s(a, "group") {
                Some(devices::GroupFilter::Direct(g))
            } else if let Some(g) = s(a, "subtree") {
                Some(devices::GroupFilter::Subtree(g))
            } else if b(a, "ungrouped") {
                Some(devices::GroupFilter::Ungrouped)
            } else {
                None
            };
            let filter = devices::DeviceFilter {
                group,
                tag_id: s(a, "tag_id"),
                hostname: s(a, "hostname"),
                serial_number: s(a, "serial_number"),
            };
            let p = devices::list_devices(&filter, include, &page(a))?;
            list(p.items, p.has_more, device)
        }
        "get-device" => device(devices::get_device(&req(a, "id"), include)?),
        "update-device" => {
            let group = if b(a, "ungroup") {
                Some(devices::GroupChange::Ungroup)
            } else {
                s(a, "group_id").map(devices::GroupChange::MoveTo)
            };
            device(devices::update_device(
                &req(a, "id"),
                &devices::DeviceUpdate {
                    name: s(a, "name"),
                    notes: s(a, "notes"),
                    group,
                },
            )?)
        }
        "delete-device" => {
            devices::delete_device(&req(a, "id"))?;
            Value::Null
        }
        "list-groups" => {
            let parent = if b(a, "root") {
                Some(groups::ParentFilter::Root)
            } else {
                s(a, "parent").map(groups::ParentFilter::ChildrenOf)
            };
            let p = groups::list_groups(parent.as_ref(), &page(a))?;
            list(p.items, p.has_more, group)
        }
        "get-group" => group(groups::get_group(&req(a, "id"))?),
        "create-group" => group(groups::create_group(&groups::NewGroup {
            name: req(a, "name"),
            parent_id: s(a, "parent_id"),
        })?),
        "update-group" => {
            let parent = if b(a, "make_root") {
                Some(groups::ParentChange::MakeRoot)
            } else {
                s(a, "parent_id").map(groups::ParentChange::MoveUnder)
            };
            let custom_fields = a
                .get("custom_fields")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            group(groups::update_group(
                &req(a, "id"),
                &groups::GroupUpdate {
                    name: s(a, "name"),
                    parent,
                    custom_fields,
                },
            )?)
        }
        "delete-group" => {
            groups::delete_group(&req(a, "id"))?;
            Value::Null
        }
        "assign-devices" => {
            groups::assign_devices(&req(a, "id"), &ids(a))?;
            Value::Null
        }
        "remove-devices" => {
            groups::remove_devices(&req(a, "id"), &ids(a))?;
            Value::Null
        }
        "list-tags" => {
            let p = tags::list_tags(s(a, "device_id").as_deref(), &page(a))?;
            list(p.items, p.has_more, tag)
        }
        "get-tag" => tag(tags::get_tag(&req(a, "id"))?),
        "create-tag" => tag(tags::create_tag(&req(a, "name"))?),
        "update-tag" => tag(tags::update_tag(&req(a, "id"), &req(a, "name"))?),
        "delete-tag" => {
            tags::delete_tag(&req(a, "id"))?;
            Value::Null
        }
        "tag-devices" => tag(tags::tag_devices(&req(a, "id"), &ids(a))?),
        "untag-devices" => {
            tags::untag_devices(&req(a, "id"), &ids(a))?;
            Value::Null
        }
        "trigger-webhook" => {
            // `token_from_device`: the token is the device's notes, read from
            // Level at run time, so a test can switch the automation a plan
            // was approved for by changing Level between plan and apply.
            let token = match s(a, "token_from_device") {
                Some(id) => devices::get_device(&id, devices::DeviceInclude::empty())?
                    .notes
                    .unwrap_or_default(),
                None => req(a, "token"),
            };
            let runs = automations::trigger_webhook(
                &token,
                &automations::TriggerRequest {
                    device_ids: ids(a),
                    variables: s(a, "variables"),
                },
            )?;
            Value::Array(
                runs.into_iter()
                    .map(|r| json!({"id": r.id, "device_id": r.device_id}))
                    .collect(),
            )
        }
        other => return Err(Error::InvalidInput(format!("unknown op {other}"))),
    })
}

impl Guest for ApiCall {
    fn run(invocation: Invocation) -> Result<String, RunError> {
        let args: Value = levelhost_sdk::input(&invocation.input)?;
        let op = args
            .get("op")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        levelhost_sdk::output(&test_programs::outcome(call(&op, &args)))
    }
}

levelhost_sdk::export!(ApiCall);

fn main() {}
