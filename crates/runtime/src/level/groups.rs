//! `level:api/groups`.

use super::{LevelCtx, LevelError, host_call, page};
use crate::bindings::groups::{
    Group, GroupPage, GroupUpdate, Host, NewGroup, ParentChange, ParentFilter,
};
use crate::bindings::types::{Id, PageRequest};
use level_api::model::{self, DeviceIds, GroupPatch};
use levelhost_core::capability::Operation;
use levelhost_core::gate::{Facts, Gate};

impl Host for LevelCtx {
    async fn list_groups(
        &mut self,
        parent: Option<ParentFilter>,
        p: PageRequest,
    ) -> Result<GroupPage, LevelError> {
        host_call!(self, call, Operation::ListGroups, [&parent, &p], {
            let parent = match parent {
                Some(ParentFilter::Root) => Some("null".to_owned()),
                Some(ParentFilter::ChildrenOf(id)) => {
                    self.require(
                        call,
                        Facts {
                            groups: vec![id.clone()],
                            ..Facts::default()
                        },
                    )?;
                    Some(id)
                }
                None => None,
            };
            let page = self
                .filtered_page(
                    call,
                    page(&p),
                    |g: &model::Group| g.id.clone(),
                    |gate, g| gate.group_in_scope(&g.id),
                    |c, pp| {
                        let parent = parent.clone();
                        async move { c.list_groups(parent.as_deref(), &pp).await }
                    },
                )
                .await?;
            for g in &page.data {
                self.note_name(&g.id, "group", &g.name);
            }
            Ok(GroupPage {
                items: page
                    .data
                    .into_iter()
                    .map(|g| group(g, &self.gate()))
                    .collect(),
                has_more: page.has_more,
            })
        })
    }

    async fn get_group(&mut self, id: Id) -> Result<Group, LevelError> {
        host_call!(self, call, Operation::GetGroup, [&id], {
            self.require(
                call,
                Facts {
                    groups: vec![id.clone()],
                    ..Facts::default()
                },
            )?;
            let found = self
                .fetch(call, |c| async move { c.get_group(&id).await })
                .await?;
            self.note_name(&found.id, "group", &found.name);
            Ok(group(found, &self.gate()))
        })
    }

    async fn create_group(&mut self, new: NewGroup) -> Result<Group, LevelError> {
        host_call!(self, call, Operation::CreateGroup, [&new], {
            self.require(
                call,
                Facts {
                    groups: new.parent_id.iter().cloned().collect(),
                    organization: new.parent_id.is_none(),
                    ..Facts::default()
                },
            )?;
            let body = model::NewGroup {
                name: new.name,
                parent_id: new.parent_id,
            };
            let planned = model::Group {
                id: format!("dry-run:group:{}", body.name),
                parent_id: body.parent_id.clone(),
                name: body.name.clone(),
                ..model::Group::default()
            };
            let parent = body.parent_id.clone();
            let planned_id = planned.id.clone();
            let request = serde_json::to_value(&body).unwrap_or_default();
            let created = self
                .write(
                    call,
                    request,
                    || planned,
                    |c| async move { c.create_group(&body).await },
                )
                .await?;
            self.gate().adopt_group(&created.id, parent.as_deref());
            self.gate().note_created(&planned_id, &created.id);
            self.note_name(&created.id, "group", &created.name);
            Ok(group(created, &self.gate()))
        })
    }

    async fn update_group(&mut self, id: Id, update: GroupUpdate) -> Result<Group, LevelError> {
        host_call!(self, call, Operation::UpdateGroup, [&id, &update], {
            let mut facts = Facts {
                groups: vec![id.clone()],
                custom_fields: update
                    .custom_fields
                    .iter()
                    .map(|(k, _)| k.clone())
                    .collect(),
                ..Facts::default()
            };
            if !update.custom_fields.is_empty() {
                // The group's own values are custom field values like any other.
                facts.needs.push(Operation::SetValue.capability());
            }
            match &update.parent {
                Some(ParentChange::MoveUnder(parent)) => facts.groups.push(parent.clone()),
                Some(ParentChange::MakeRoot) => facts.organization = true,
                None => {}
            }
            self.require(call, facts)?;
            let body = GroupPatch {
                name: update.name,
                parent_id: update.parent.map(|p| match p {
                    ParentChange::MoveUnder(id) => Some(id),
                    ParentChange::MakeRoot => None,
                }),
                custom_fields: (!update.custom_fields.is_empty())
                    .then(|| update.custom_fields.into_iter().collect()),
            };
            let planned = if self.plans_writes() {
                let current_id = id.clone();
                let mut current = self
                    .fetch(call, |c| async move { c.get_group(&current_id).await })
                    .await?;
                if let Some(name) = &body.name {
                    current.name = name.clone();
                }
                if let Some(parent) = &body.parent_id {
                    current.parent_id = parent.clone();
                }
                if let Some(fields) = &body.custom_fields {
                    let own = current.custom_fields.get_or_insert_with(Default::default);
                    own.extend(fields.iter().map(|(k, v)| (k.clone(), Some(v.clone()))));
                }
                current
            } else {
                model::Group::default()
            };
            let request = serde_json::json!({ "id": id, "change": body });
            let updated = self
                .write(
                    call,
                    request,
                    || planned,
                    |c| async move { c.update_group(&id, &body).await },
                )
                .await?;
            Ok(group(updated, &self.gate()))
        })
    }

    async fn delete_group(&mut self, id: Id) -> Result<(), LevelError> {
        host_call!(self, call, Operation::DeleteGroup, [&id], {
            self.require(
                call,
                Facts {
                    groups: vec![id.clone()],
                    ..Facts::default()
                },
            )?;
            self.write(
                call,
                serde_json::json!({ "id": id }),
                || (),
                |c| async move { c.delete_group(&id).await },
            )
            .await
        })
    }

    async fn assign_devices(&mut self, id: Id, device_ids: Vec<Id>) -> Result<(), LevelError> {
        host_call!(self, call, Operation::AssignDevices, [&id, &device_ids], {
            let devices = self.device_facts(call, &device_ids).await?;
            self.require(
                call,
                Facts {
                    groups: vec![id.clone()],
                    devices,
                    ..Facts::default()
                },
            )?;
            let body = DeviceIds { device_ids };
            let request = serde_json::json!({ "id": id, "device_ids": body.device_ids });
            let moved = body.device_ids.clone();
            let group_id = id.clone();
            self.write(
                call,
                request,
                || (),
                |c| async move { c.assign_group_devices(&id, &body).await },
            )
            .await?;
            self.note_moved(moved, Some(group_id));
            Ok(())
        })
    }

    async fn remove_devices(&mut self, id: Id, device_ids: Vec<Id>) -> Result<(), LevelError> {
        host_call!(self, call, Operation::RemoveDevices, [&id, &device_ids], {
            let devices = self.device_facts(call, &device_ids).await?;
            // Taking devices out of a group leaves them in none: outside any group scope.
            self.require(
                call,
                Facts {
                    groups: vec![id.clone()],
                    devices,
                    organization: true,
                    ..Facts::default()
                },
            )?;
            let body = DeviceIds { device_ids };
            let request = serde_json::json!({ "id": id, "device_ids": body.device_ids });
            let removed = body.device_ids.clone();
            self.write(
                call,
                request,
                || (),
                |c| async move { c.remove_group_devices(&id, &body).await },
            )
            .await?;
            self.note_moved(removed, None);
            Ok(())
        })
    }
}

/// The group as the plugin sees it: its own values of custom fields outside
/// the grant's custom-field scope are left out.
fn group(g: model::Group, gate: &Gate) -> Group {
    Group {
        id: g.id,
        parent_id: g.parent_id,
        child_ids: g.child_ids,
        name: g.name,
        device_count: g.device_count,
        descendent_device_count: g.descendent_device_count,
        custom_fields: g
            .custom_fields
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| gate.field_in_scope(k))
            .filter_map(|(k, v)| Some((k, v?)))
            .collect(),
    }
}
