//! The organization's API keys, as Level's Settings -> API Keys page keeps
//! them: create one (read-only or read-write), regenerate it (the old value
//! stops working at once, the id and access stay), delete it. Outside
//! `/v2`, like `/_sim/alerts`: `GET|POST /_sim/keys`,
//! `POST /_sim/keys/{id}/regenerate`, `DELETE /_sim/keys/{id}`.

use serde::{Deserialize, Serialize};

use super::tenant::SimError;

/// `read-only` or `read-write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// View only: writes answer 403.
    ReadOnly,
    /// View, create, update and delete.
    ReadWrite,
}

/// One API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Its id (stays the same when regenerated).
    pub id: String,
    /// Its value, the string sent in `Authorization`.
    pub key: String,
    /// Its access level.
    pub access: Access,
    /// What it is for.
    #[serde(default)]
    pub description: String,
}

/// Every key of the organization.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    keys: Vec<ApiKeyRecord>,
}

impl Keys {
    /// The keys a simulator starts with: its configured read-write and read-only keys.
    pub fn new(read_write: &str, read_only: &str) -> Self {
        Self {
            keys: vec![
                ApiKeyRecord {
                    id: "key_read_write".to_owned(),
                    key: read_write.to_owned(),
                    access: Access::ReadWrite,
                    description: "configured read-write key".to_owned(),
                },
                ApiKeyRecord {
                    id: "key_read_only".to_owned(),
                    key: read_only.to_owned(),
                    access: Access::ReadOnly,
                    description: "configured read-only key".to_owned(),
                },
            ],
        }
    }

    /// The access of the key whose value is `key`, if it is one.
    pub fn access(&self, key: &str) -> Option<Access> {
        self.keys
            .iter()
            .find(|k| !key.is_empty() && k.key.as_bytes() == key.as_bytes())
            .map(|k| k.access)
    }

    /// Every key.
    pub fn list(&self) -> Vec<ApiKeyRecord> {
        self.keys.clone()
    }

    /// Creates a key.
    pub fn create(&mut self, access: Access, description: &str) -> ApiKeyRecord {
        let record = ApiKeyRecord {
            id: format!("key_{}", super::random_key().to_lowercase()),
            key: super::random_key(),
            access,
            description: description.to_owned(),
        };
        self.keys.push(record.clone());
        record
    }

    /// Gives key `id` a new value; the old one stops working.
    pub fn regenerate(&mut self, id: &str) -> Result<ApiKeyRecord, SimError> {
        let record = self
            .keys
            .iter_mut()
            .find(|k| k.id == id)
            .ok_or_else(SimError::not_found)?;
        record.key = super::random_key();
        Ok(record.clone())
    }

    /// Deletes key `id`.
    pub fn delete(&mut self, id: &str) -> Result<(), SimError> {
        let before = self.keys.len();
        self.keys.retain(|k| k.id != id);
        if self.keys.len() == before {
            return Err(SimError::not_found());
        }
        Ok(())
    }
}
