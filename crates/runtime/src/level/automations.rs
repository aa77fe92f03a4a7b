//! `level:api/automations`.

use super::{Call, LevelCtx, LevelError, host_call};
use crate::bindings::automations::{AutomationRun, Host, TriggerRequest};
use levelhost_core::capability::Operation;
use levelhost_core::gate::{Facts, automation_target};

impl LevelCtx {
    /// Learns the name of the automation `token` triggers, so a plan shows
    /// it by name. Level lists webhook triggers only in newer versions of
    /// its API, so a failed look-up leaves the plan with the fingerprint.
    async fn name_automation(&mut self, call: &mut Call, token: &str) {
        let target = automation_target(token);
        if self.names.contains_key(&target) {
            return;
        }
        let Ok(hooks) = self
            .fetch(call, |c| async move { c.list_automation_webhooks().await })
            .await
        else {
            return;
        };
        if let Some(hook) = hooks.iter().find(|h| h.token() == token) {
            self.note_name(&target, "automation", &hook.automation_name);
        }
    }
}

impl Host for LevelCtx {
    async fn trigger_webhook(
        &mut self,
        token: String,
        request: TriggerRequest,
    ) -> Result<Vec<AutomationRun>, LevelError> {
        host_call!(self, call, Operation::TriggerWebhook, [&token, &request], {
            let mut body = match request
                .variables
                .as_deref()
                .map(serde_json::from_str::<serde_json::Value>)
            {
                None => serde_json::Map::new(),
                Some(Ok(serde_json::Value::Object(map))) => map,
                Some(Ok(_)) => {
                    return Err(LevelError::invalid_input("variables must be a JSON object"));
                }
                Some(Err(e)) => {
                    return Err(LevelError::invalid_input(format!(
                        "variables are not valid JSON: {e}"
                    )));
                }
            };
            let mut facts = Facts {
                automations: vec![token.clone()],
                ..Facts::default()
            };
            if request.device_ids.is_empty() {
                // With no devices listed, the automation's own conditions pick
                // them from the whole organization: an organization-level action
                // that may reach every device.
                facts.organization = true;
                facts.devices = self
                    .devices_reached(call, &facts, Default::default())
                    .await?;
            } else {
                facts.devices = self.device_facts(call, &request.device_ids).await?;
            }
            self.require(call, facts)?;
            if self.plans_writes() {
                self.name_automation(call, &token).await;
            }
            if !request.device_ids.is_empty() {
                body.insert("device_ids".to_owned(), request.device_ids.into());
            }
            // The token is a credential of its own: the plan names the webhook, not the token.
            let plan = serde_json::json!({ "body": body });
            let response = self
                .write(call, plan, Default::default, |c| async move {
                    c.trigger_webhook(&token, &body).await
                })
                .await?;
            Ok(response
                .runs
                .into_iter()
                .map(|r| AutomationRun {
                    id: r.id,
                    device_id: r.device_id,
                })
                .collect())
        })
    }
}
