//! Automation webhooks: triggering one, and what it would run on.

use super::*;

impl Tenant {
    /// triggerWebhook: one run per device. With no `device_ids` the
    /// trigger's own conditions pick the devices; the simulator's triggers
    /// have none, so they pick every device of the organization.
    pub fn trigger(
        &mut self,
        token: &str,
        body: serde_json::Value,
    ) -> SimResult<Vec<AutomationRun>> {
        if !self.webhooks.iter().any(|h| h.token == token) {
            return Err(SimError::not_found());
        }
        let device_ids: Vec<String> = match body.get("device_ids") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        SimError::bad_request("device_ids must be an array of strings")
                    })
                })
                .collect::<SimResult<_>>()?,
            Some(_) => {
                return Err(SimError::bad_request(
                    "device_ids must be an array of strings",
                ));
            }
        };
        for id in &device_ids {
            if !self.devices.contains(id) {
                return Err(SimError::unprocessable(format!(
                    "device {id} does not exist"
                )));
            }
        }
        let device_ids = if device_ids.is_empty() {
            self.devices.iter().map(|d| d.device.id.clone()).collect()
        } else {
            device_ids
        };
        let runs: Vec<AutomationRun> = device_ids
            .into_iter()
            .map(|device| AutomationRun {
                id: self.next_id("AutomationRun"),
                device_id: Some(device),
            })
            .collect();
        self.triggered.push(TriggerRecord {
            token: token.to_owned(),
            body,
            runs: runs.clone(),
        });
        Ok(runs)
    }

    pub(crate) fn insert_group(&mut self, name: &str, parent: Option<&str>) -> String {
        let id = self.next_id("DeviceGroup");
        self.groups.push(GroupRow {
            id: id.clone(),
            name: name.to_owned(),
            parent_id: parent.map(str::to_owned),
            custom_fields: BTreeMap::new(),
        });
        id
    }

    pub(crate) fn insert_device(
        &mut self,
        mut device: Device,
        tag_ids: BTreeSet<String>,
    ) -> String {
        let id = self.next_id("Device");
        device.id = id.clone();
        self.devices.push(device, tag_ids);
        id
    }

    pub(crate) fn insert_webhook(&mut self, token: &str, name: &str) {
        let automation_id = self.next_id("Automation");
        self.webhooks.push(AutomationWebhook {
            token: token.to_owned(),
            automation_id,
            name: name.to_owned(),
        });
    }

    pub(crate) fn insert_resolved_alert(
        &mut self,
        device_id: &str,
        name: &str,
        severity: &str,
        started: String,
        resolved: String,
    ) -> SimResult<()> {
        let mut alert = self.raise_alert(device_id, name, severity)?;
        alert.is_resolved = true;
        alert.started_at = started;
        alert.resolved_at = Some(resolved);
        if let Some(last) = self.alerts.last_mut() {
            *last = alert;
        }
        Ok(())
    }
}
