//! Alerts: list, show, resolve.

use super::*;

impl LevelClient {
    /// `GET /v2/alerts` (listAlerts).
    pub async fn list_alerts(
        &self,
        filter: &AlertQuery,
        page: &PageParams,
    ) -> Result<Page<Alert>, ClientError> {
        let mut q = page_query(page);
        push_opt(&mut q, "device_id", &filter.device_id);
        push_opt(&mut q, "status", &filter.status);
        self.json("listAlerts", Method::GET, &["alerts"], &q, None)
            .await
    }

    /// `GET /v2/alerts/{id}` (showAlert).
    pub async fn get_alert(&self, id: &str) -> Result<Alert, ClientError> {
        self.json(
            "showAlert",
            Method::GET,
            &["alerts", id],
            &Query::new(),
            None,
        )
        .await
    }

    /// `POST /v2/alerts/{id}/resolve` (resolveAlert).
    pub async fn resolve_alert(&self, id: &str) -> Result<Alert, ClientError> {
        self.json(
            "resolveAlert",
            Method::POST,
            &["alerts", id, "resolve"],
            &Query::new(),
            None,
        )
        .await
    }
}
