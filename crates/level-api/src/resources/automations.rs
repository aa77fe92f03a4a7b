//! Automation webhooks: list and trigger.

use super::*;

impl LevelClient {
    /// `GET /v2/automations/webhooks`: every automation's webhook trigger.
    /// Reported for newer versions of Level's API only; the answer may be a
    /// bare list or wrapped in `data`.
    pub async fn list_automation_webhooks(&self) -> Result<Vec<AutomationWebhook>, ClientError> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Listing {
            Bare(Vec<AutomationWebhook>),
            Wrapped { data: Vec<AutomationWebhook> },
        }
        let listing: Listing = self
            .json(
                "listAutomationWebhooks",
                Method::GET,
                &["automations", "webhooks"],
                &Query::new(),
                None,
            )
            .await?;
        Ok(match listing {
            Listing::Bare(hooks) | Listing::Wrapped { data: hooks } => hooks,
        })
    }

    /// `POST /v2/automations/webhooks/{token}` (triggerWebhook). `body` must be a JSON object.
    pub async fn trigger_webhook(
        &self,
        token: &str,
        body: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<TriggerResponse, ClientError> {
        let bytes = self
            .send(
                "triggerWebhook",
                Method::POST,
                &["automations", "webhooks", token],
                &Query::new(),
                Some(body),
            )
            .await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(TriggerResponse::default());
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            operation: "triggerWebhook",
            message: e.to_string(),
        })
    }
}
