//! Alerts: list, show, resolve, and raising one (the simulator's own door).

use super::*;

impl Tenant {
    /// listAlerts.
    pub fn list_alerts(
        &self,
        device_id: Option<&str>,
        status: Option<&str>,
        page: &PageArgs,
    ) -> SimResult<Page<Alert>> {
        let resolved = match status {
            None => None,
            Some("active") => Some(false),
            Some("resolved") => Some(true),
            Some(other) => {
                return Err(SimError::bad_request(format!(
                    "status must be active or resolved, not {other:?}"
                )));
            }
        };
        let items: Vec<Alert> = self
            .alerts
            .iter()
            .filter(|a| device_id.is_none_or(|d| a.device_id == d))
            .filter(|a| resolved.is_none_or(|r| a.is_resolved == r))
            .cloned()
            .collect();
        paginate(&items, page, |a| &a.id)
    }

    /// showAlert.
    pub fn get_alert(&self, id: &str) -> SimResult<Alert> {
        find(&self.alerts, id, |a| &a.id).cloned()
    }

    /// resolveAlert; resolving a resolved alert is a no-op that returns it.
    pub fn resolve_alert(&mut self, id: &str) -> SimResult<(Alert, bool)> {
        let alert = find_mut(&mut self.alerts, id, |a| &a.id)?;
        let changed = !alert.is_resolved;
        if changed {
            alert.is_resolved = true;
            alert.resolved_at = Some(now());
        }
        Ok((alert.clone(), changed))
    }

    /// Raises a new alert on a device (used by the seed and by event demos).
    pub fn raise_alert(&mut self, device_id: &str, name: &str, severity: &str) -> SimResult<Alert> {
        let hostname = self.devices.find(device_id)?.device.hostname.clone();
        let alert = Alert {
            id: self.next_id("Alert"),
            device_id: device_id.to_owned(),
            device_hostname: Some(hostname),
            name: name.to_owned(),
            description: format!("{name} on {device_id}"),
            payload: None,
            severity: severity.to_owned(),
            is_resolved: false,
            started_at: now(),
            resolved_at: None,
        };
        self.alerts.push(alert.clone());
        Ok(alert)
    }
}
