//! `level:api/tags`.

use super::{LevelCtx, LevelError, page};
use crate::bindings::tags::{Host, Tag, TagPage};
use crate::bindings::types::{Id, PageRequest};
use crate::client::model::{self, DeviceIds, TagName};

impl Host for LevelCtx {
    async fn list_tags(
        &mut self,
        device_id: Option<Id>,
        p: PageRequest,
    ) -> Result<TagPage, LevelError> {
        let page = self
            .call(|c| async move { c.list_tags(device_id.as_deref(), &page(p)).await })
            .await?;
        Ok(TagPage {
            items: page.data.into_iter().map(tag).collect(),
            has_more: page.has_more,
        })
    }

    async fn get_tag(&mut self, id: Id) -> Result<Tag, LevelError> {
        self.call(|c| async move { c.get_tag(&id).await })
            .await
            .map(tag)
    }

    async fn create_tag(&mut self, name: String) -> Result<Tag, LevelError> {
        let body = TagName { name };
        self.call(|c| async move { c.create_tag(&body).await })
            .await
            .map(tag)
    }

    async fn update_tag(&mut self, id: Id, name: String) -> Result<Tag, LevelError> {
        let body = TagName { name };
        self.call(|c| async move { c.update_tag(&id, &body).await })
            .await
            .map(tag)
    }

    async fn delete_tag(&mut self, id: Id) -> Result<(), LevelError> {
        self.call(|c| async move { c.delete_tag(&id).await }).await
    }

    async fn tag_devices(&mut self, id: Id, device_ids: Vec<Id>) -> Result<Tag, LevelError> {
        let body = DeviceIds { device_ids };
        self.call(|c| async move { c.tag_devices(&id, &body).await })
            .await
            .map(tag)
    }

    async fn untag_devices(&mut self, id: Id, device_ids: Vec<Id>) -> Result<(), LevelError> {
        let body = DeviceIds { device_ids };
        self.call(|c| async move { c.untag_devices(&id, &body).await })
            .await
    }
}

fn tag(t: model::Tag) -> Tag {
    Tag {
        id: t.id,
        name: t.name,
        device_count: t.device_count,
    }
}
