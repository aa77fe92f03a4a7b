//! `level:api/automations`.

use super::{LevelCtx, LevelError};
use crate::bindings::automations::{AutomationRun, Host, TriggerRequest};

impl Host for LevelCtx {
    async fn trigger_webhook(
        &mut self,
        token: String,
        request: TriggerRequest,
    ) -> Result<Vec<AutomationRun>, LevelError> {
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
        if !request.device_ids.is_empty() {
            body.insert("device_ids".to_owned(), request.device_ids.into());
        }
        let response = self
            .call(|c| async move { c.trigger_webhook(&token, &body).await })
            .await?;
        Ok(response
            .runs
            .into_iter()
            .map(|r| AutomationRun {
                id: r.id,
                device_id: r.device_id,
            })
            .collect())
    }
}
