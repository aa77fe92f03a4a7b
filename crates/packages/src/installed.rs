//! Reading an installed plugin's component for the runtime: the one way
//! `run`, `check` and `serve` get the bytes they compile.
//!
//! A package is read, its digest checked against the config's pin and its
//! signatures against the trust policy, and its manifest against the one the
//! config was read with; only then are its component's bytes handed out, so
//! what is compiled is exactly what was verified. A loose component is read
//! only when the trust policy allows unsigned plugins.

use std::path::PathBuf;

use crate::package::{MANIFEST_FILE, Package, PackageError};
use crate::trust::{TrustError, TrustPolicy, Vetting};

/// Where a plugin's component comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PluginSource {
    /// A loose component file and its manifest: unsigned, for local development.
    Component(PathBuf),
    /// A package directory, optionally pinned to a digest.
    Package {
        /// The package directory.
        dir: PathBuf,
        /// The digest it must have.
        pinned: Option<String>,
    },
}

/// Why an installed plugin's component could not be handed to the runtime.
#[derive(Debug, thiserror::Error)]
pub enum InstalledError {
    /// The component file could not be read.
    #[error("cannot read plugin {}", path.display())]
    ReadComponent {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The plugin's package could not be read.
    #[error("plugin {plugin}")]
    Package {
        /// The plugin.
        plugin: String,
        /// What is wrong with the package.
        #[source]
        error: PackageError,
    },
    /// The trust policy refuses the plugin.
    #[error("plugin {plugin} is refused: {error}")]
    NotTrusted {
        /// The plugin.
        plugin: String,
        /// Why.
        error: TrustError,
    },
    /// The package's manifest is not the one read with the config.
    #[error(
        "plugin {plugin}: the manifest in {} changed after the configuration was read; run again",
        path.display()
    )]
    ManifestChanged {
        /// The plugin.
        plugin: String,
        /// The manifest file.
        path: PathBuf,
    },
}

/// Reads the component of plugin `name` from `source`, verified as the
/// module docs say. `manifest_digest` is the digest of the manifest text the
/// configuration was read with.
pub fn verified_component(
    name: &str,
    source: &PluginSource,
    manifest_digest: &str,
    trust: &TrustPolicy,
) -> Result<(Vec<u8>, Vetting), InstalledError> {
    let refused = |error| InstalledError::NotTrusted {
        plugin: name.to_owned(),
        error,
    };
    match source {
        PluginSource::Component(path) => {
            if !trust.allow_unsigned {
                return Err(refused(TrustError::LooseComponent { path: path.clone() }));
            }
            let bytes = std::fs::read(path).map_err(|source| InstalledError::ReadComponent {
                path: path.clone(),
                source,
            })?;
            Ok((bytes, Vetting::UnsignedAllowed))
        }
        PluginSource::Package { dir, pinned } => {
            let package = Package::open(dir).map_err(|error| InstalledError::Package {
                plugin: name.to_owned(),
                error,
            })?;
            if let Some(pinned) = pinned
                && *pinned != package.digest
            {
                return Err(refused(TrustError::PinMismatch {
                    pinned: pinned.clone(),
                    actual: package.digest.clone(),
                }));
            }
            let vetting = trust.verify(&package).map_err(refused)?;
            if levelhost_core::digest(package.manifest_text.as_bytes()) != manifest_digest {
                return Err(InstalledError::ManifestChanged {
                    plugin: name.to_owned(),
                    path: dir.join(MANIFEST_FILE),
                });
            }
            Ok((package.component, vetting))
        }
    }
}
