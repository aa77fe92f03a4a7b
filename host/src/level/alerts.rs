//! `level:api/alerts`.

use super::{LevelCtx, LevelError, page};
use crate::bindings::alerts::{Alert, AlertFilter, AlertPage, AlertStatus, Host, Severity};
use crate::bindings::types::{Id, PageRequest};
use crate::client::{AlertQuery, model};

impl Host for LevelCtx {
    async fn list_alerts(
        &mut self,
        filter: AlertFilter,
        p: PageRequest,
    ) -> Result<AlertPage, LevelError> {
        let query = AlertQuery {
            device_id: filter.device_id,
            status: filter.status.map(|s| match s {
                AlertStatus::Active => "active".to_owned(),
                AlertStatus::Resolved => "resolved".to_owned(),
            }),
        };
        let page = self
            .call(|c| async move { c.list_alerts(&query, &page(p)).await })
            .await?;
        Ok(AlertPage {
            items: page.data.into_iter().map(alert).collect(),
            has_more: page.has_more,
        })
    }

    async fn get_alert(&mut self, id: Id) -> Result<Alert, LevelError> {
        self.call(|c| async move { c.get_alert(&id).await })
            .await
            .map(alert)
    }

    async fn resolve_alert(&mut self, id: Id) -> Result<Alert, LevelError> {
        self.call(|c| async move { c.resolve_alert(&id).await })
            .await
            .map(alert)
    }
}

fn alert(a: model::Alert) -> Alert {
    Alert {
        id: a.id,
        device_id: a.device_id,
        device_hostname: a.device_hostname,
        name: a.name,
        description: a.description,
        payload: a.payload,
        severity: match a.severity.as_str() {
            "information" => Severity::Information,
            "warning" => Severity::Warning,
            "critical" => Severity::Critical,
            "emergency" => Severity::Emergency,
            _ => Severity::Other(a.severity),
        },
        is_resolved: a.is_resolved,
        started_at: a.started_at,
        resolved_at: a.resolved_at,
    }
}
