//! Plugin packages in OCI registries, in the Wasm OCI artifact layout the
//! ecosystem uses (wkg, wasmCloud, Spin): a `application/vnd.wasm.config.v0+json`
//! config and the component as the first layer, `application/wasm`. The
//! manifest, README and signatures follow as levelhost's own layers, so
//! other tools pull the component and ignore the rest, and a pulled package
//! is byte for byte the pushed one (its digest, and so its signatures, hold).
//!
//! Registries on loopback are spoken to over plain HTTP; others over HTTPS
//! unless `insecure` is set. Credentials come from
//! `LEVELHOST_REGISTRY_USERNAME` and `LEVELHOST_REGISTRY_PASSWORD`, else
//! access is anonymous.

use std::collections::BTreeMap;
use std::path::PathBuf;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::package::{MANIFEST_FILE, Package, PackageError, README_FILE};
use crate::trust::Signature;

/// The Wasm OCI artifact config media type.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The Wasm OCI artifact layer media type.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The artifact type of a Wasm component.
pub const WASM_COMPONENT_ARTIFACT_TYPE: &str = "application/vnd.wasm.component.v1+wasm";
/// The layer holding `plugin.toml`.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.levelhost.plugin.manifest.v1+toml";
/// The layer holding the README.
pub const README_MEDIA_TYPE: &str = "text/markdown";
/// A layer holding one signature file.
pub const SIGNATURE_MEDIA_TYPE: &str = "application/vnd.levelhost.signature.v1+json";
/// The annotation carrying the package digest.
pub const DIGEST_ANNOTATION: &str = "dev.levelhost.package.digest";

/// Why a push or pull failed.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The reference is not `REGISTRY/REPOSITORY:TAG` (or `@sha256:…`).
    #[error(
        "{reference:?} is not an OCI reference such as 127.0.0.1:5000/plugins/name:0.1.0: {message}"
    )]
    Reference {
        /// The reference given.
        reference: String,
        /// The parser's explanation.
        message: String,
    },
    /// The registry refused or could not be reached.
    #[error("registry {registry}: {message}")]
    Registry {
        /// The registry.
        registry: String,
        /// What went wrong.
        message: String,
    },
    /// The artifact is not a levelhost package.
    #[error("{reference}: {message}")]
    NotAPackage {
        /// The reference.
        reference: String,
        /// What is missing or wrong.
        message: String,
    },
    /// The pulled package could not be read or written.
    #[error(transparent)]
    Package(#[from] PackageError),
}

/// Connection settings.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Use plain HTTP even for a registry that is not on loopback.
    pub insecure: bool,
    /// Basic-auth credentials; anonymous when `None`.
    pub credentials: Option<Credentials>,
}

/// A registry user name and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password; never shown by `Debug`.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

fn parse_reference(reference: &str) -> Result<Reference, OciError> {
    reference
        .parse::<Reference>()
        .map_err(|e| OciError::Reference {
            reference: reference.to_owned(),
            message: e.to_string(),
        })
}

fn is_loopback(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(registry);
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

fn client(reference: &Reference, options: &RegistryOptions) -> Client {
    let registry = reference.resolve_registry().to_owned();
    let protocol = if options.insecure || is_loopback(&registry) {
        ClientProtocol::HttpsExcept(vec![registry])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        ..ClientConfig::default()
    })
}

fn auth(options: &RegistryOptions) -> RegistryAuth {
    match &options.credentials {
        Some(Credentials { username, password }) if !username.is_empty() => {
            RegistryAuth::Basic(username.clone(), password.clone())
        }
        _ => RegistryAuth::Anonymous,
    }
}

fn registry_error(reference: &Reference, e: impl std::fmt::Display) -> OciError {
    OciError::Registry {
        registry: reference.resolve_registry().to_owned(),
        message: e.to_string(),
    }
}

/// Pushes a package; returns the manifest's URL.
pub async fn push(
    package: &Package,
    reference: &str,
    options: RegistryOptions,
) -> Result<String, OciError> {
    let reference = parse_reference(reference)?;
    let imports = package.imports()?;
    let mut layers = vec![
        ImageLayer::new(
            package.component.clone(),
            WASM_LAYER_MEDIA_TYPE.to_owned(),
            None,
        ),
        ImageLayer::new(
            package.manifest_text.clone().into_bytes(),
            MANIFEST_MEDIA_TYPE.to_owned(),
            Some(title(MANIFEST_FILE)),
        ),
    ];
    if let Some(readme) = &package.readme {
        layers.push(ImageLayer::new(
            readme.clone().into_bytes(),
            README_MEDIA_TYPE.to_owned(),
            Some(title(README_FILE)),
        ));
    }
    for (_, signature) in &package.signatures {
        layers.push(ImageLayer::new(
            signature.to_json().into_bytes(),
            SIGNATURE_MEDIA_TYPE.to_owned(),
            Some(title(&signature.file_name())),
        ));
    }
    let wasm_digest = levelhost_core::digest(&package.component);
    let config = serde_json::json!({
        "created": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [wasm_digest],
        "component": { "imports": imports, "exports": ["level:api/handler@0.1.0"] },
    });
    let config = Config::new(
        serde_json::to_vec(&config).unwrap_or_default(),
        WASM_CONFIG_MEDIA_TYPE.to_owned(),
        None,
    );
    let m = &package.manifest;
    let annotations = BTreeMap::from([
        ("org.opencontainers.image.title".to_owned(), m.name.clone()),
        (
            "org.opencontainers.image.version".to_owned(),
            m.version.clone(),
        ),
        (
            "org.opencontainers.image.description".to_owned(),
            m.description.clone(),
        ),
        (DIGEST_ANNOTATION.to_owned(), package.digest.clone()),
    ]);
    let mut manifest = OciImageManifest::build(&layers, &config, Some(annotations));
    manifest.artifact_type = Some(WASM_COMPONENT_ARTIFACT_TYPE.to_owned());
    let response = client(&reference, &options)
        .push(&reference, &layers, config, &auth(&options), Some(manifest))
        .await
        .map_err(|e| registry_error(&reference, e))?;
    Ok(response.manifest_url)
}

/// Pulls a package into memory; [`Package::write`] stores it. Nothing is
/// trusted here: install and load verify it.
pub async fn pull(reference: &str, options: RegistryOptions) -> Result<Package, OciError> {
    let parsed = parse_reference(reference)?;
    let not_a_package = |message: &str| OciError::NotAPackage {
        reference: reference.to_owned(),
        message: message.to_owned(),
    };
    let image = client(&parsed, &options)
        .pull(
            &parsed,
            &auth(&options),
            vec![
                WASM_LAYER_MEDIA_TYPE,
                MANIFEST_MEDIA_TYPE,
                README_MEDIA_TYPE,
                SIGNATURE_MEDIA_TYPE,
            ],
        )
        .await
        .map_err(|e| registry_error(&parsed, e))?;
    let mut component = None;
    let mut manifest = None;
    let mut readme = None;
    let mut signatures = Vec::new();
    for layer in image.layers {
        match layer.media_type.as_str() {
            WASM_LAYER_MEDIA_TYPE if component.is_none() => component = Some(layer.data),
            MANIFEST_MEDIA_TYPE if manifest.is_none() => {
                manifest = Some(
                    String::from_utf8(layer.data)
                        .map_err(|_| not_a_package("its plugin.toml layer is not UTF-8"))?,
                );
            }
            README_MEDIA_TYPE => readme = Some(String::from_utf8_lossy(&layer.data).into_owned()),
            SIGNATURE_MEDIA_TYPE => {
                let text = String::from_utf8(layer.data)
                    .map_err(|_| not_a_package("a signature layer is not UTF-8"))?;
                signatures.push(
                    Signature::from_json(&text)
                        .map_err(|e| not_a_package(&format!("a signature layer: {e}")))?,
                );
            }
            _ => {}
        }
    }
    let component = component.ok_or_else(|| not_a_package("it has no application/wasm layer"))?;
    let manifest = manifest.ok_or_else(|| {
        not_a_package("it has no plugin.toml layer: it is a component, not a levelhost package")
    })?;
    let origin = PathBuf::from(format!("{reference}/{MANIFEST_FILE}"));
    let mut package = Package::from_parts(component, manifest, readme, &origin)?;
    for signature in signatures {
        package.add_signature(signature);
    }
    Ok(package)
}

fn title(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("org.opencontainers.image.title".to_owned(), name.to_owned())])
}
