//! Level's webhook signatures: `X-Level-Signature: sha256=<hex>`, the
//! HMAC-SHA256 of the raw body keyed by the webhook's secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header Level signs webhook deliveries in.
pub const SIGNATURE_HEADER: &str = "X-Level-Signature";

/// A MAC keyed by `secret`. HMAC takes keys of every length (a long key is
/// hashed first), so this cannot fail.
#[expect(
    clippy::expect_used,
    reason = "HMAC's new_from_slice accepts every key length; its Result only serves the KeyInit trait"
)]
fn mac(secret: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of every length")
}

/// Checks `X-Level-Signature: sha256=<hex>` against the HMAC-SHA256 of the raw body, in constant time.
pub fn verify(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), &'static str> {
    let header = header.ok_or("the X-Level-Signature header is missing")?;
    let hex_sig = header
        .strip_prefix("sha256=")
        .ok_or("the signature is not of the form sha256=<hex>")?;
    let given = hex::decode(hex_sig.trim()).map_err(|_| "the signature is not hex")?;
    let mut mac = mac(secret);
    mac.update(body);
    mac.verify_slice(&given)
        .map_err(|_| "the signature does not match the body")
}

/// Signs a body the way Level does: `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_the_exact_body_and_secret() {
        let sig = sign(b"s3cret", br#"{"a":1}"#);
        assert!(verify(b"s3cret", br#"{"a":1}"#, Some(&sig)).is_ok());
        assert!(verify(b"s3cret", br#"{"a":2}"#, Some(&sig)).is_err());
        assert!(verify(b"other", br#"{"a":1}"#, Some(&sig)).is_err());
        assert!(verify(b"s3cret", br#"{"a":1}"#, None).is_err());
        assert!(verify(b"s3cret", br#"{"a":1}"#, Some("md5=00")).is_err());
    }
}
