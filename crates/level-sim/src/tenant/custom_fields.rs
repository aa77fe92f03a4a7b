//! Custom fields and their values at the organization, group and device level.

use super::*;

impl Tenant {
    /// listCustomFields.
    pub fn list_custom_fields(&self, page: &PageArgs) -> SimResult<Page<CustomField>> {
        paginate(&self.custom_fields, page, |f| &f.id)
    }

    /// showCustomField.
    pub fn get_custom_field(&self, id: &str) -> SimResult<CustomField> {
        find(&self.custom_fields, id, |f| &f.id).cloned()
    }

    /// createCustomField.
    pub fn create_custom_field(&mut self, new: NewCustomField) -> SimResult<CustomField> {
        let name = required_name(&new.name)?;
        self.refuse_duplicate(self.custom_fields.iter().any(|f| f.name == name))?;
        let field = CustomField {
            id: self.next_id("CustomField"),
            reference: reference_for(&name),
            name,
            admin_only: new.admin_only,
        };
        self.custom_fields.push(field.clone());
        Ok(field)
    }

    /// updateCustomField.
    pub fn update_custom_field(
        &mut self,
        id: &str,
        patch: CustomFieldPatch,
    ) -> SimResult<CustomField> {
        if let Some(name) = &patch.name {
            let name = required_name(name)?;
            self.refuse_duplicate(
                self.custom_fields
                    .iter()
                    .any(|f| f.name == name && f.id != id),
            )?;
        }
        let field = find_mut(&mut self.custom_fields, id, |f| &f.id)?;
        let old_name = field.name.clone();
        if let Some(name) = patch.name {
            field.name = name.trim().to_owned();
        }
        if let Some(admin_only) = patch.admin_only {
            field.admin_only = admin_only;
        }
        let field = field.clone();
        if field.name != old_name {
            for group in &mut self.groups {
                if let Some(v) = group.custom_fields.remove(&old_name) {
                    group.custom_fields.insert(field.name.clone(), v);
                }
            }
        }
        Ok(field)
    }

    /// deleteCustomField; its values go with it.
    pub fn delete_custom_field(&mut self, id: &str) -> SimResult<()> {
        let name = find(&self.custom_fields, id, |f| &f.id)?.name.clone();
        self.custom_fields.retain(|f| f.id != id);
        self.values.retain(|(field, _), _| field != id);
        for group in &mut self.groups {
            group.custom_fields.remove(&name);
        }
        Ok(())
    }

    /// The chain of ids a value can come from for `target`, most specific first, ending with the organization.
    fn value_chain(&self, target: Option<&str>) -> SimResult<Vec<Option<String>>> {
        let mut chain = Vec::new();
        let mut group = match target {
            None => None,
            Some(id) => {
                if let Some(row) = self.devices.get(id) {
                    chain.push(Some(id.to_owned()));
                    row.device.group_id.clone()
                } else if self.groups.iter().any(|g| g.id == id) {
                    Some(id.to_owned())
                } else {
                    return Err(SimError::not_found());
                }
            }
        };
        while let Some(id) = group {
            chain.push(Some(id.clone()));
            group = self
                .groups
                .iter()
                .find(|g| g.id == id)
                .and_then(|g| g.parent_id.clone());
        }
        chain.push(None);
        Ok(chain)
    }

    /// listCustomFieldValues: for each field, the value in effect for the target.
    pub fn list_values(
        &self,
        target: Option<&str>,
        field: Option<&str>,
        page: &PageArgs,
    ) -> SimResult<Page<CustomFieldValue>> {
        let chain = self.value_chain(target)?;
        let items: Vec<CustomFieldValue> = self
            .custom_fields
            .iter()
            .filter(|f| field.is_none_or(|id| f.id == id))
            .map(|f| {
                let found = chain.iter().find_map(|level| {
                    self.values
                        .get(&(f.id.clone(), level.clone()))
                        .map(|v| (level.clone(), v.clone()))
                });
                CustomFieldValue {
                    custom_field_id: f.id.clone(),
                    custom_field_name: f.name.clone(),
                    assigned_to_id: found.as_ref().and_then(|(l, _)| l.clone()),
                    value: found.map(|(_, v)| v),
                }
            })
            .collect();
        paginate(&items, page, |v| &v.custom_field_id)
    }

    fn below(&self, target: Option<&str>) -> BTreeSet<String> {
        let groups: BTreeSet<String> = match target {
            None => self.groups.iter().map(|g| g.id.clone()).collect(),
            Some(id) if self.groups.iter().any(|g| g.id == id) => self.subtree(id),
            Some(_) => return BTreeSet::new(),
        };
        let mut ids: BTreeSet<String> = self
            .devices
            .iter()
            .filter(|d| {
                target.is_none()
                    || d.device
                        .group_id
                        .as_ref()
                        .is_some_and(|g| groups.contains(g))
            })
            .map(|d| d.device.id.clone())
            .collect();
        ids.extend(groups);
        if let Some(t) = target {
            ids.remove(t);
        }
        ids
    }

    fn check_value_target(&self, change: &ValueChange) -> SimResult<CustomField> {
        let field = self
            .custom_fields
            .iter()
            .find(|f| f.id == change.custom_field_id)
            .cloned()
            .ok_or_else(|| SimError::new(404, "Custom field not found"))?;
        if let Some(target) = &change.assigned_to_id
            && !self.devices.contains(target)
            && !self.groups.iter().any(|g| &g.id == target)
        {
            return Err(SimError::new(404, "assigned_to_id not found"));
        }
        Ok(field)
    }

    fn clear_below(&mut self, field: &CustomField, target: Option<&str>) {
        let below = self.below(target);
        self.values
            .retain(|(f, t), _| !(f == &field.id && t.as_ref().is_some_and(|t| below.contains(t))));
        for group in &mut self.groups {
            if below.contains(&group.id) {
                group.custom_fields.remove(&field.name);
            }
        }
    }

    /// updateCustomFieldValue.
    pub fn set_value(&mut self, change: ValueChange) -> SimResult<CustomFieldValue> {
        let field = self.check_value_target(&change)?;
        let value = change
            .value
            .clone()
            .ok_or_else(|| SimError::bad_request("value is required"))?;
        if change.force {
            self.clear_below(&field, change.assigned_to_id.as_deref());
        }
        self.store_value(&field, change.assigned_to_id.clone(), Some(value.clone()));
        Ok(CustomFieldValue {
            custom_field_id: field.id,
            custom_field_name: field.name,
            assigned_to_id: change.assigned_to_id,
            value: Some(value),
        })
    }

    pub(super) fn store_value(
        &mut self,
        field: &CustomField,
        target: Option<String>,
        value: Option<String>,
    ) {
        if let Some(group) = target
            .as_ref()
            .and_then(|t| self.groups.iter_mut().find(|g| &g.id == t))
        {
            match &value {
                Some(v) => group.custom_fields.insert(field.name.clone(), v.clone()),
                None => group.custom_fields.remove(&field.name),
            };
        }
        let key = (field.id.clone(), target);
        match value {
            Some(v) => self.values.insert(key, v),
            None => self.values.remove(&key),
        };
    }

    /// deleteCustomFieldValue.
    pub fn delete_value(&mut self, change: ValueChange) -> SimResult<()> {
        let field = self.check_value_target(&change)?;
        if change.force {
            self.clear_below(&field, change.assigned_to_id.as_deref());
        }
        self.store_value(&field, change.assigned_to_id, None);
        Ok(())
    }
}
