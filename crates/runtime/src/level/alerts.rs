//! `level:api/alerts`.

use super::{LevelCtx, LevelError, host_call, page};
use crate::bindings::alerts::{Alert, AlertFilter, AlertPage, AlertStatus, Host, Severity};
use crate::bindings::types::{Id, PageRequest};
use level_api::{AlertQuery, model};
use levelhost_core::capability::Operation;
use levelhost_core::gate::Facts;

impl Host for LevelCtx {
    async fn list_alerts(
        &mut self,
        filter: AlertFilter,
        p: PageRequest,
    ) -> Result<AlertPage, LevelError> {
        host_call!(self, call, Operation::ListAlerts, [&filter, &p], {
            if let Some(device) = &filter.device_id {
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
            let query = AlertQuery {
                device_id: filter.device_id,
                status: filter.status.map(|s| match s {
                    AlertStatus::Active => "active".to_owned(),
                    AlertStatus::Resolved => "resolved".to_owned(),
                }),
            };
            let raw = self
                .filtered_page(
                    call,
                    page(&p),
                    |a: &model::Alert| a.id.clone(),
                    |_, _| true,
                    |c, pp| {
                        let query = query.clone();
                        async move { c.list_alerts(&query, &pp).await }
                    },
                )
                .await?;
            // Alerts are in scope when their device is.
            let mut items = Vec::new();
            for a in raw.data {
                let group = self.device_group(call, &a.device_id).await?;
                if self.gate().device_in_scope(group.as_deref()) {
                    items.push(alert(a));
                }
            }
            Ok(AlertPage {
                items,
                has_more: raw.has_more,
            })
        })
    }

    async fn get_alert(&mut self, id: Id) -> Result<Alert, LevelError> {
        host_call!(self, call, Operation::GetAlert, [&id], {
            let found = self
                .fetch(call, |c| async move { c.get_alert(&id).await })
                .await?;
            let devices = self
                .device_facts(call, std::slice::from_ref(&found.device_id))
                .await?;
            self.require(
                call,
                Facts {
                    devices,
                    others: vec![found.id.clone()],
                    ..Facts::default()
                },
            )?;
            Ok(alert(found))
        })
    }

    async fn resolve_alert(&mut self, id: Id) -> Result<Alert, LevelError> {
        host_call!(self, call, Operation::ResolveAlert, [&id], {
            let current = {
                let id = id.clone();
                self.fetch(call, |c| async move { c.get_alert(&id).await })
                    .await?
            };
            let devices = self
                .device_facts(call, std::slice::from_ref(&current.device_id))
                .await?;
            self.require(
                call,
                Facts {
                    devices,
                    others: vec![current.id.clone()],
                    ..Facts::default()
                },
            )?;
            let planned = model::Alert {
                is_resolved: true,
                resolved_at: current
                    .resolved_at
                    .clone()
                    .or_else(|| Some(level_api::clock::now())),
                ..current
            };
            self.write(
                call,
                serde_json::json!({ "id": id }),
                || planned,
                |c| async move { c.resolve_alert(&id).await },
            )
            .await
            .map(alert)
        })
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
