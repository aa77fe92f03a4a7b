//! `level:api/devices`.

use super::{LevelCtx, LevelError, host_call, page};
use crate::bindings::devices::{
    Device, DeviceFilter, DeviceInclude, DevicePage, DeviceUpdate, GroupChange, GroupFilter, Host,
};
use crate::bindings::types::{Id, PageRequest};
use level_api::{DeviceIncludes, DeviceQuery, model};
use levelhost_core::capability::Operation;
use levelhost_core::gate::{Facts, Gate};

impl Host for LevelCtx {
    async fn list_devices(
        &mut self,
        filter: DeviceFilter,
        sections: DeviceInclude,
        p: PageRequest,
    ) -> Result<DevicePage, LevelError> {
        // `sections` is flags: a few bits, nothing to count.
        host_call!(self, call, Operation::ListDevices, [&filter, &p], {
            let mut query = DeviceQuery {
                tag_id: filter.tag_id,
                hostname: filter.hostname,
                serial_number: filter.serial_number,
                include: includes(sections),
                ..DeviceQuery::default()
            };
            match filter.group {
                Some(GroupFilter::Direct(id)) => {
                    self.require(
                        call,
                        Facts {
                            groups: vec![id.clone()],
                            ..Facts::default()
                        },
                    )?;
                    query.group_id = Some(id);
                }
                Some(GroupFilter::Subtree(id)) => {
                    self.require(
                        call,
                        Facts {
                            groups: vec![id.clone()],
                            ..Facts::default()
                        },
                    )?;
                    query.ancestor_group_id = Some(id);
                }
                Some(GroupFilter::Ungrouped) => query.group_id = Some("null".to_owned()),
                None => {
                    // One scope root: let Level do the filtering.
                    if let [root] = self.gate().scopes().group_roots.as_slice() {
                        query.ancestor_group_id = Some(root.clone());
                    }
                }
            }
            let page = self
                .filtered_page(
                    call,
                    page(&p),
                    |d: &model::Device| d.id.clone(),
                    |gate, d| gate.device_in_scope(d.group_id.as_deref()),
                    |c, pp| {
                        let query = query.clone();
                        async move { c.list_devices(&query, &pp).await }
                    },
                )
                .await?;
            for d in &page.data {
                self.note_device(&d.id, d.group_id.clone());
                self.note_name(&d.id, "device", &d.hostname);
            }
            Ok(DevicePage {
                items: page
                    .data
                    .into_iter()
                    .map(|d| device(d, &self.gate()))
                    .collect(),
                has_more: page.has_more,
            })
        })
    }

    async fn get_device(&mut self, id: Id, sections: DeviceInclude) -> Result<Device, LevelError> {
        // `sections` is flags: a few bits, nothing to count.
        host_call!(self, call, Operation::GetDevice, [&id], {
            let include = includes(sections);
            let found = self
                .fetch(call, |c| async move { c.get_device(&id, &include).await })
                .await?;
            self.require(
                call,
                Facts {
                    devices: vec![(found.id.clone(), found.group_id.clone())],
                    ..Facts::default()
                },
            )?;
            self.note_device(&found.id, found.group_id.clone());
            self.note_name(&found.id, "device", &found.hostname);
            Ok(device(found, &self.gate()))
        })
    }

    async fn update_device(&mut self, id: Id, update: DeviceUpdate) -> Result<Device, LevelError> {
        host_call!(self, call, Operation::UpdateDevice, [&id, &update], {
            let mut facts = Facts {
                devices: self.device_facts(call, std::slice::from_ref(&id)).await?,
                ..Facts::default()
            };
            match &update.group {
                Some(GroupChange::MoveTo(group)) => facts.groups.push(group.clone()),
                Some(GroupChange::Ungroup) => facts.organization = true,
                None => {}
            }
            self.require(call, facts)?;
            let body = model::DevicePatch {
                name: update.name,
                notes: update.notes,
                group_id: update.group.map(|g| match g {
                    GroupChange::MoveTo(id) => Some(id),
                    GroupChange::Ungroup => None,
                }),
            };
            let moved = body.group_id.clone().map(|g| (id.clone(), g));
            // In a dry run the plugin gets the device as it would be after the change.
            let planned = if self.plans_writes() {
                let current_id = id.clone();
                let current = self
                    .fetch(call, |c| async move {
                        c.get_device(&current_id, &Default::default()).await
                    })
                    .await?;
                Some(apply_patch(current, &body))
            } else {
                None
            };
            let request = serde_json::to_value(&body).unwrap_or_default();
            let updated = self
                .write(
                    call,
                    request,
                    move || planned.unwrap_or_default(),
                    |c| async move { c.update_device(&id, &body).await },
                )
                .await?;
            if let Some((id, group)) = moved {
                self.note_moved([id], group);
            }
            Ok(device(updated, &self.gate()))
        })
    }

    async fn delete_device(&mut self, id: Id) -> Result<(), LevelError> {
        host_call!(self, call, Operation::DeleteDevice, [&id], {
            let devices = self.device_facts(call, std::slice::from_ref(&id)).await?;
            self.require(
                call,
                Facts {
                    devices,
                    ..Facts::default()
                },
            )?;
            self.write(
                call,
                serde_json::json!({ "id": id }),
                || (),
                |c| async move { c.delete_device(&id).await },
            )
            .await
        })
    }
}

fn apply_patch(mut d: model::Device, patch: &model::DevicePatch) -> model::Device {
    if let Some(name) = &patch.name {
        d.nickname = Some(name.clone());
    }
    if let Some(notes) = &patch.notes {
        d.notes = Some(notes.clone());
    }
    if let Some(group) = &patch.group_id {
        d.group_id = group.clone();
        d.group_name = None;
    }
    d
}

fn includes(f: DeviceInclude) -> DeviceIncludes {
    DeviceIncludes {
        operating_system: f.contains(DeviceInclude::OPERATING_SYSTEM),
        cpus: f.contains(DeviceInclude::CPUS),
        memory: f.contains(DeviceInclude::MEMORY),
        disks: f.contains(DeviceInclude::DISKS),
        disk_partitions: f.contains(DeviceInclude::DISK_PARTITIONS),
        network_interfaces: f.contains(DeviceInclude::NETWORK_INTERFACES),
        motherboard: f.contains(DeviceInclude::MOTHERBOARD),
        security: f.contains(DeviceInclude::SECURITY),
    }
}

/// The device as the plugin sees it: tags outside the grant's tag scope are left out.
fn device(d: model::Device, gate: &Gate) -> Device {
    let mut device = Device::from(d);
    device.tags.retain(|t| gate.tag_in_scope(t));
    device
}
