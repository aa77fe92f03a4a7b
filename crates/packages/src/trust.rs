//! Vetting by signature: reviewers' ed25519 keys, package signatures, and
//! the operator's trust policy (trusted reviewers, revocations, and whether
//! unsigned plugins are allowed for local development).
//!
//! A reviewer signs a package's digest (see `package`), so a signature
//! covers the component and the manifest byte for byte. Keys are written
//! as `ed25519:<base64>`; a key's id is the first 16 hex digits of the
//! sha256 of its 32 bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

use crate::package::Package;

const PUBLIC_PREFIX: &str = "ed25519:";
const SECRET_PREFIX: &str = "levelhost-ed25519-secret:";
const SIGNED_CONTEXT: &str = "levelhost-signature-v1";

/// Why a key could not be read, parsed or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is not `ed25519:<base64>` of a valid key.
    #[error("{text:?} is not an ed25519 public key: {reason}")]
    BadPublicKey {
        /// The text given.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The secret key file is not one `levelhost key generate` wrote.
    #[error("{path}: {reason}")]
    BadSecretKey {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A key file would be overwritten.
    #[error("{0} already exists; choose another name or remove it")]
    Exists(PathBuf),
    /// A key file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
}

/// Why a signature does not vouch for a package.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature file cannot be parsed.
    #[error("not a signature file: {0}")]
    Malformed(String),
    /// It signs another digest.
    #[error(
        "it signs {signed}, not this package's {actual}: the component or manifest changed after signing"
    )]
    OtherDigest {
        /// The digest signed.
        signed: String,
        /// The package's digest.
        actual: String,
    },
    /// The ed25519 signature is not valid for the digest and key.
    #[error("the signature does not verify: it was forged or damaged")]
    Forged,
    /// The key is revoked.
    #[error("key {0} is revoked")]
    RevokedKey(String),
    /// The key is not a trusted reviewer's.
    #[error("key {id} ({key}) is not a trusted reviewer")]
    Untrusted {
        /// The key's id.
        id: String,
        /// The key.
        key: String,
    },
}

/// A reviewer's public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// The key's id: 16 hex digits, used for signature file names.
    pub fn id(&self) -> String {
        hex::encode(&Sha256::digest(self.0.as_bytes())[..8])
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", BASE64.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = |reason| KeyError::BadPublicKey {
            text: s.to_owned(),
            reason,
        };
        let body = s
            .strip_prefix(PUBLIC_PREFIX)
            .ok_or_else(|| bad("a public key is written ed25519:<base64>"))?;
        let bytes: [u8; 32] = BASE64
            .decode(body)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("not 32 bytes of base64"))?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| bad("not a point on the curve"))
    }
}

/// A reviewer's secret key. Its Debug output shows only the public half.
pub struct SecretKey(SigningKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public())
    }
}

impl SecretKey {
    /// A new random key.
    pub fn generate() -> Self {
        Self(SigningKey::from_bytes(&rand::random::<[u8; 32]>()))
    }

    /// Its public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The key file's text.
    pub fn to_text(&self) -> String {
        format!("{SECRET_PREFIX}{}\n", BASE64.encode(self.0.to_bytes()))
    }

    /// Reads a key file written by [`write_key_pair`].
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|e| KeyError::Io {
            path: path.to_owned(),
            message: format!("cannot read the key: {e}"),
        })?;
        let bad = |reason| KeyError::BadSecretKey {
            path: path.to_owned(),
            reason,
        };
        let body = text.trim().strip_prefix(SECRET_PREFIX).ok_or_else(|| {
            bad("not a levelhost secret key (one made by `levelhost key generate`)")
        })?;
        let bytes: [u8; 32] = BASE64
            .decode(body)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("the secret key is damaged"))?;
        Ok(Self(SigningKey::from_bytes(&bytes)))
    }

    /// Signs a package digest.
    pub fn sign(&self, digest: &str) -> Signature {
        Signature {
            digest: digest.to_owned(),
            key: self.public(),
            signature: self.0.sign(&signed_message(digest)),
        }
    }
}

/// Writes a new key pair as `BASE.key` (owner-only) and `BASE.pub`; refuses to overwrite.
pub fn write_key_pair(base: &Path) -> Result<(PathBuf, PathBuf, PublicKey), KeyError> {
    use std::io::Write as _;
    let secret_path = base.with_extension("key");
    let public_path = base.with_extension("pub");
    for path in [&secret_path, &public_path] {
        if path.exists() {
            return Err(KeyError::Exists(path.clone()));
        }
    }
    let key = SecretKey::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let io = |path: &Path, e: std::io::Error| KeyError::Io {
        path: path.to_owned(),
        message: format!("cannot write: {e}"),
    };
    let mut file = options
        .open(&secret_path)
        .map_err(|e| io(&secret_path, e))?;
    file.write_all(key.to_text().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io(&secret_path, e))?;
    std::fs::write(&public_path, format!("{}\n", key.public())).map_err(|e| io(&public_path, e))?;
    Ok((secret_path, public_path, key.public()))
}

fn signed_message(digest: &str) -> Vec<u8> {
    format!("{SIGNED_CONTEXT}\n{digest}\n").into_bytes()
}

/// A reviewer's signature over a package digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The package digest signed.
    pub digest: String,
    /// Who signed.
    pub key: PublicKey,
    /// The ed25519 signature.
    pub signature: ed25519_dalek::Signature,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureFile {
    digest: String,
    key: String,
    signature: String,
}

impl Signature {
    /// The file it is kept in: `KEYID.sig`.
    pub fn file_name(&self) -> String {
        format!("{}.sig", self.key.id())
    }

    /// The file's JSON text.
    pub fn to_json(&self) -> String {
        let file = SignatureFile {
            digest: self.digest.clone(),
            key: self.key.to_string(),
            signature: BASE64.encode(self.signature.to_bytes()),
        };
        let mut text = serde_json::to_string_pretty(&file).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Parses a signature file.
    pub fn from_json(text: &str) -> Result<Self, SignatureError> {
        let file: SignatureFile =
            serde_json::from_str(text).map_err(|e| SignatureError::Malformed(e.to_string()))?;
        let key = file
            .key
            .parse()
            .map_err(|e: KeyError| SignatureError::Malformed(e.to_string()))?;
        let bytes: [u8; 64] = BASE64
            .decode(file.signature.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                SignatureError::Malformed("the signature is not 64 bytes of base64".to_owned())
            })?;
        Ok(Self {
            digest: file.digest,
            key,
            signature: ed25519_dalek::Signature::from_bytes(&bytes),
        })
    }

    /// Whether the signature is valid for `digest`.
    pub fn check(&self, digest: &str) -> Result<(), SignatureError> {
        if self.digest != digest {
            return Err(SignatureError::OtherDigest {
                signed: self.digest.clone(),
                actual: digest.to_owned(),
            });
        }
        self.key
            .0
            .verify_strict(&signed_message(digest), &self.signature)
            .map_err(|_| SignatureError::Forged)
    }
}

/// The operator's trust policy (`[trust]` in levelhost.toml).
#[derive(Debug, Clone, Default)]
pub struct TrustPolicy {
    /// Trusted reviewers by name.
    pub reviewers: BTreeMap<String, PublicKey>,
    /// Revoked keys (`ed25519:…`) and package digests (`sha256:…`).
    pub revoked: BTreeSet<String>,
    /// Whether unsigned plugins (loose components, packages with no signature) may load.
    pub allow_unsigned: bool,
}

/// Who vouched for a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vetting {
    /// Signed by these trusted reviewers (names from the policy).
    Signed(Vec<String>),
    /// Not signed, allowed by `allow_unsigned`.
    UnsignedAllowed,
}

impl fmt::Display for Vetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Vetting::Signed(names) => write!(f, "signed by {}", names.join(", ")),
            Vetting::UnsignedAllowed => write!(f, "unsigned (allowed by [trust] allow_unsigned)"),
        }
    }
}

/// Why a package is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// No signature, and unsigned plugins are not allowed.
    #[error(
        "package {digest} is not signed; have a reviewer sign it (`levelhost plugin sign`), or set [trust] allow_unsigned = true for local development"
    )]
    Unsigned {
        /// The package digest.
        digest: String,
    },
    /// The package itself is revoked.
    #[error("package {digest} is revoked by [trust] revoked")]
    RevokedPackage {
        /// The package digest.
        digest: String,
    },
    /// Signatures exist, but none is valid and by a trusted, unrevoked reviewer.
    #[error("package {digest} is not vetted by a trusted reviewer: {}", reasons.join("; "))]
    NotVetted {
        /// The package digest.
        digest: String,
        /// Why each signature was refused.
        reasons: Vec<String>,
    },
    /// The package is not the one the config pins.
    #[error(
        "package {actual} is not the pinned {pinned}: the package changed since it was installed"
    )]
    PinMismatch {
        /// The digest in the config.
        pinned: String,
        /// The package's digest.
        actual: String,
    },
    /// A loose component (not a package), and unsigned plugins are not allowed.
    #[error(
        "{path} is a loose component, not a signed package; install a signed package, or set [trust] allow_unsigned = true for local development"
    )]
    LooseComponent {
        /// The component file.
        path: PathBuf,
    },
}

impl TrustPolicy {
    /// The name of a trusted reviewer's key, if it is trusted and not revoked.
    fn reviewer(&self, key: &PublicKey) -> Result<&str, SignatureError> {
        if self.revoked.contains(&key.to_string()) {
            return Err(SignatureError::RevokedKey(key.id()));
        }
        self.reviewers
            .iter()
            .find(|(_, k)| *k == key)
            .map(|(name, _)| name.as_str())
            .ok_or_else(|| SignatureError::Untrusted {
                id: key.id(),
                key: key.to_string(),
            })
    }

    /// Decides whether `package` may be installed or loaded: at least one
    /// valid signature over its digest by a trusted, unrevoked reviewer, and
    /// the package not revoked itself; or no signature at all when unsigned
    /// plugins are allowed. A package with only bad signatures is refused
    /// even then.
    pub fn verify(&self, package: &Package) -> Result<Vetting, TrustError> {
        let digest = &package.digest;
        if self.revoked.contains(digest) {
            return Err(TrustError::RevokedPackage {
                digest: digest.clone(),
            });
        }
        if package.signatures.is_empty() {
            return if self.allow_unsigned {
                Ok(Vetting::UnsignedAllowed)
            } else {
                Err(TrustError::Unsigned {
                    digest: digest.clone(),
                })
            };
        }
        let mut vetted = Vec::new();
        let mut reasons = Vec::new();
        for (path, signature) in &package.signatures {
            let file = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| signature.file_name());
            match signature
                .check(digest)
                .and_then(|()| self.reviewer(&signature.key))
            {
                Ok(name) => vetted.push(name.to_owned()),
                Err(reason) => reasons.push(format!("{file}: {reason}")),
            }
        }
        if vetted.is_empty() {
            return Err(TrustError::NotVetted {
                digest: digest.clone(),
                reasons,
            });
        }
        vetted.sort();
        vetted.dedup();
        Ok(Vetting::Signed(vetted))
    }
}
