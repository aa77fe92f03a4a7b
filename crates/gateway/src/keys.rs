//! Client keys: made at random, shown once, kept only as their SHA-256.

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// What every client key starts with, so one found in a script or a log is
/// known for a levelhost client key (and never mistaken for a Level key).
pub const PREFIX: &str = "lhc_";

/// A new client key: the text to hand to the client once, and its hash.
#[derive(Clone)]
pub struct ClientKey {
    /// The key.
    pub text: String,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientKey([secret])")
    }
}

impl ClientKey {
    /// A key of 32 random bytes.
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self {
            text: format!(
                "{PREFIX}{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
            ),
        }
    }

    /// Its hash, as the config keeps it.
    pub fn hash(&self) -> KeyHash {
        KeyHash::of(&self.text)
    }
}

/// The SHA-256 of a key: what the config and the gateway keep.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash([u8; 32]);

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl std::fmt::Display for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

/// A `sha256:HEX` text that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a client key hash is written sha256: and 64 hex digits")]
pub struct BadHash;

impl std::str::FromStr for KeyHash {
    type Err = BadHash;

    fn from_str(text: &str) -> Result<Self, BadHash> {
        let hex_text = text.strip_prefix("sha256:").ok_or(BadHash)?;
        let bytes = hex::decode(hex_text).map_err(|_| BadHash)?;
        Ok(Self(bytes.try_into().map_err(|_| BadHash)?))
    }
}

impl KeyHash {
    /// The hash of `key`.
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }
}

/// Whether `key` has the shape of a Level API key (an opaque string of
/// letters and digits, about 24 long) rather than a levelhost client key.
pub fn looks_like_level_key(key: &str) -> bool {
    !key.starts_with(PREFIX)
        && (16..=64).contains(&key.len())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_kept_as_its_hash_and_reads_back() {
        let key = ClientKey::generate();
        assert!(key.text.starts_with(PREFIX) && key.text.len() > 40);
        let written = key.hash().to_string();
        assert_eq!(written.parse::<KeyHash>(), Ok(KeyHash::of(&key.text)));
        assert_ne!(ClientKey::generate().text, key.text);
        assert!(!format!("{key:?}").contains(&key.text));
        assert_eq!("sha256:00".parse::<KeyHash>(), Err(BadHash));
        assert!(looks_like_level_key("AbCdEfGhIjKlMnOpQrStUvWx"));
        assert!(!looks_like_level_key(&key.text));
    }
}
