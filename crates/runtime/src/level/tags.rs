//! `level:api/tags`.

use super::{Call, LevelCtx, LevelError, host_call, page};
use crate::bindings::tags::{Host, Tag, TagPage};
use crate::bindings::types::{Id, PageRequest};
use level_api::model::{self, DeviceIds, TagName};
use levelhost_core::capability::Operation;
use levelhost_core::gate::Facts;

impl LevelCtx {
    /// The tag's name, needed only when the grant limits tags.
    async fn tag_name(&mut self, call: &mut Call, id: &str) -> Result<Option<String>, LevelError> {
        if self.gate().scopes().tags.is_none() {
            self.planned_tag(id)?;
            return Ok(None);
        }
        if let Some(name) = self.planned_tag(id)? {
            return Ok(Some(name.to_owned()));
        }
        let found = {
            let id = id.to_owned();
            self.fetch(call, |c| async move { c.get_tag(&id).await })
                .await?
        };
        self.note_name(&found.id, "tag", &found.name);
        Ok(Some(found.name))
    }

    async fn tag_facts(
        &mut self,
        call: &mut Call,
        id: &str,
        devices: &[String],
    ) -> Result<Facts, LevelError> {
        Ok(Facts {
            tags: self.tag_name(call, id).await?.into_iter().collect(),
            devices: self.device_facts(call, devices).await?,
            others: vec![id.to_owned()],
            ..Facts::default()
        })
    }

    /// What renaming or deleting a tag touches: the tag, and every device
    /// carrying it, whose tags change with it (none for a tag this dry run
    /// only planned).
    async fn tag_and_carriers(&mut self, call: &mut Call, id: &str) -> Result<Facts, LevelError> {
        level_api::check_id(id)?;
        let mut facts = self.tag_facts(call, id, &[]).await?;
        if self.planned_tag(id)?.is_none() {
            let query = level_api::DeviceQuery {
                tag_id: Some(id.to_owned()),
                ..Default::default()
            };
            facts.devices = self.devices_reached(call, &facts, query).await?;
        }
        Ok(facts)
    }
}

impl Host for LevelCtx {
    async fn list_tags(
        &mut self,
        device_id: Option<Id>,
        p: PageRequest,
    ) -> Result<TagPage, LevelError> {
        host_call!(self, call, Operation::ListTags, [&device_id, &p], {
            if let Some(device) = &device_id {
                let devices = self
                    .device_facts(call, std::slice::from_ref(device))
                    .await?;
                self.require(
                    call,
                    Facts {
                        devices,
                        ..Facts::default()
                    },
                )?;
            }
            let page = self
                .filtered_page(
                    call,
                    page(&p),
                    |t: &model::Tag| t.id.clone(),
                    |gate, t| gate.tag_in_scope(&t.name),
                    |c, pp| {
                        let device_id = device_id.clone();
                        async move { c.list_tags(device_id.as_deref(), &pp).await }
                    },
                )
                .await?;
            Ok(TagPage {
                items: page.data.into_iter().map(Tag::from).collect(),
                has_more: page.has_more,
            })
        })
    }

    async fn get_tag(&mut self, id: Id) -> Result<Tag, LevelError> {
        host_call!(self, call, Operation::GetTag, [&id], {
            let found = self
                .fetch(call, |c| async move { c.get_tag(&id).await })
                .await?;
            self.require(
                call,
                Facts {
                    tags: vec![found.name.clone()],
                    others: vec![found.id.clone()],
                    ..Facts::default()
                },
            )?;
            Ok(Tag::from(found))
        })
    }

    async fn create_tag(&mut self, name: String) -> Result<Tag, LevelError> {
        host_call!(self, call, Operation::CreateTag, [&name], {
            self.require(
                call,
                Facts {
                    tags: vec![name.clone()],
                    ..Facts::default()
                },
            )?;
            let body = TagName { name };
            let planned = model::Tag {
                id: format!("dry-run:tag:{}", body.name),
                name: body.name.clone(),
                device_count: 0,
            };
            let planned_id = planned.id.clone();
            let request = serde_json::to_value(&body).unwrap_or_default();
            let created = self
                .write(
                    call,
                    request,
                    || planned,
                    |c| async move { c.create_tag(&body).await },
                )
                .await?;
            self.gate().note_created(&planned_id, &created.id);
            Ok(Tag::from(created))
        })
    }

    async fn update_tag(&mut self, id: Id, name: String) -> Result<Tag, LevelError> {
        host_call!(self, call, Operation::UpdateTag, [&id, &name], {
            let mut facts = self.tag_and_carriers(call, &id).await?;
            facts.tags.push(name.clone());
            self.require(call, facts)?;
            let body = TagName { name };
            let planned = model::Tag {
                id: id.clone(),
                name: body.name.clone(),
                device_count: 0,
            };
            let request = serde_json::json!({ "id": id, "name": body.name });
            self.write(
                call,
                request,
                || planned,
                |c| async move { c.update_tag(&id, &body).await },
            )
            .await
            .map(Tag::from)
        })
    }

    async fn delete_tag(&mut self, id: Id) -> Result<(), LevelError> {
        host_call!(self, call, Operation::DeleteTag, [&id], {
            let facts = self.tag_and_carriers(call, &id).await?;
            self.require(call, facts)?;
            self.write(
                call,
                serde_json::json!({ "id": id }),
                || (),
                |c| async move { c.delete_tag(&id).await },
            )
            .await
        })
    }

    async fn tag_devices(&mut self, id: Id, device_ids: Vec<Id>) -> Result<Tag, LevelError> {
        host_call!(self, call, Operation::TagDevices, [&id, &device_ids], {
            let facts = self.tag_facts(call, &id, &device_ids).await?;
            self.require(call, facts)?;
            let planned = if let Some(name) = self.planned_tag(&id)? {
                model::Tag {
                    id: id.clone(),
                    name: name.to_owned(),
                    device_count: device_ids.len() as u32,
                }
            } else if self.plans_writes() {
                let id = id.clone();
                let mut current = self
                    .fetch(call, |c| async move { c.get_tag(&id).await })
                    .await?;
                current.device_count += device_ids.len() as u32;
                current
            } else {
                model::Tag::default()
            };
            let body = DeviceIds { device_ids };
            let request = serde_json::json!({ "id": id, "device_ids": body.device_ids });
            self.write(
                call,
                request,
                || planned,
                |c| async move { c.tag_devices(&id, &body).await },
            )
            .await
            .map(Tag::from)
        })
    }

    async fn untag_devices(&mut self, id: Id, device_ids: Vec<Id>) -> Result<(), LevelError> {
        host_call!(self, call, Operation::UntagDevices, [&id, &device_ids], {
            let facts = self.tag_facts(call, &id, &device_ids).await?;
            self.require(call, facts)?;
            let body = DeviceIds { device_ids };
            let request = serde_json::json!({ "id": id, "device_ids": body.device_ids });
            self.write(
                call,
                request,
                || (),
                |c| async move { c.untag_devices(&id, &body).await },
            )
            .await
        })
    }
}

impl LevelCtx {
    /// The name of a tag this dry run planned to create (its id is
    /// `dry-run:tag:<name>`). Such an id names nothing in Level, so a live
    /// run that passes one is refused rather than trusted.
    fn planned_tag<'a>(&self, id: &'a str) -> Result<Option<&'a str>, LevelError> {
        match id.strip_prefix("dry-run:tag:") {
            Some(name) if self.plans_writes() => Ok(Some(name)),
            Some(_) => Err(LevelError::invalid_input(format!(
                "{id:?} is a tag a dry run planned; it does not exist in Level"
            ))),
            None => Ok(None),
        }
    }
}
