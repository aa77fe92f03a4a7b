//! `level:api/groups`.

use super::{LevelCtx, LevelError, page};
use crate::bindings::groups::{
    Group, GroupPage, GroupUpdate, Host, NewGroup, ParentChange, ParentFilter,
};
use crate::bindings::types::{Id, PageRequest};
use crate::client::model::{self, DeviceIds, GroupPatch};

impl Host for LevelCtx {
    async fn list_groups(
        &mut self,
        parent: Option<ParentFilter>,
        p: PageRequest,
    ) -> Result<GroupPage, LevelError> {
        let parent = parent.map(|f| match f {
            ParentFilter::Root => "null".to_owned(),
            ParentFilter::ChildrenOf(id) => id,
        });
        let page = self
            .call(|c| async move { c.list_groups(parent.as_deref(), &page(p)).await })
            .await?;
        Ok(GroupPage {
            items: page.data.into_iter().map(group).collect(),
            has_more: page.has_more,
        })
    }

    async fn get_group(&mut self, id: Id) -> Result<Group, LevelError> {
        self.call(|c| async move { c.get_group(&id).await })
            .await
            .map(group)
    }

    async fn create_group(&mut self, new: NewGroup) -> Result<Group, LevelError> {
        let body = model::NewGroup {
            name: new.name,
            parent_id: new.parent_id,
        };
        self.call(|c| async move { c.create_group(&body).await })
            .await
            .map(group)
    }

    async fn update_group(&mut self, id: Id, update: GroupUpdate) -> Result<Group, LevelError> {
        let body = GroupPatch {
            name: update.name,
            parent_id: update.parent.map(|p| match p {
                ParentChange::MoveUnder(id) => Some(id),
                ParentChange::MakeRoot => None,
            }),
            custom_fields: (!update.custom_fields.is_empty())
                .then(|| update.custom_fields.into_iter().collect()),
        };
        self.call(|c| async move { c.update_group(&id, &body).await })
            .await
            .map(group)
    }

    async fn delete_group(&mut self, id: Id) -> Result<(), LevelError> {
        self.call(|c| async move { c.delete_group(&id).await })
            .await
    }

    async fn assign_devices(&mut self, id: Id, device_ids: Vec<Id>) -> Result<(), LevelError> {
        let body = DeviceIds { device_ids };
        self.call(|c| async move { c.assign_group_devices(&id, &body).await })
            .await
    }

    async fn remove_devices(&mut self, id: Id, device_ids: Vec<Id>) -> Result<(), LevelError> {
        let body = DeviceIds { device_ids };
        self.call(|c| async move { c.remove_group_devices(&id, &body).await })
            .await
    }
}

fn group(g: model::Group) -> Group {
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
            .filter_map(|(k, v)| Some((k, v?)))
            .collect(),
    }
}
