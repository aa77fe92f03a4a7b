//! Installing a vetted package into a configuration: the package is copied
//! into the config's package store, keyed by digest, and the plugin's entry
//! in `levelhost.toml` is pointed at it and pinned to its digest.
//!
//! A first install grants what the manifest asks for (the operator chose
//! to install it and sees the list), and only as far as the operator says:
//! the groups named with `--group`, or the whole organization when asked
//! for in so many words (`--whole-organization`); with neither it installs
//! nothing. An upgrade never widens the grant: capabilities the new version
//! asks for beyond it are reported, not granted, and the plugin runs with
//! the grant it had until the operator edits it. Installing an older
//! version than the one installed needs `--allow-downgrade`. Older versions
//! stay in the store until `prune` removes them.

use std::path::{Path, PathBuf};

use crate::config::{HostConfig, PluginSource};
use levelhost_core::capability::Capability;
use levelhost_core::location::FileError;
use levelhost_packages::package::{Package, PackageError};
use levelhost_packages::trust::{TrustError, Vetting};

/// Where installed packages are kept, relative to the config file.
pub const STORE_DIR: &str = "packages";

/// Why an install did not happen. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The configuration is not valid, before or after the change.
    #[error(transparent)]
    Config(#[from] FileError),
    /// The package could not be read or stored.
    #[error(transparent)]
    Package(#[from] PackageError),
    /// The trust policy refuses the package.
    #[error("refused: {0}")]
    Trust(#[from] TrustError),
    /// The configuration as the install would leave it is not valid; it was not changed.
    #[error("installing would make the configuration invalid, so nothing was changed: {0}")]
    WouldBreak(FileError),
    /// The install needs a choice the operator did not make.
    #[error("{0}")]
    Choice(String),
    /// The configuration could not be edited or written.
    #[error("{path}: {message}")]
    Edit {
        /// The config file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// Options of an install.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// The plugin's name in the config (default: the manifest's name).
    pub name: Option<String>,
    /// The key a newly installed plugin uses (default: the only key).
    pub key: Option<String>,
    /// The groups a newly installed plugin's grant is limited to.
    pub groups: Vec<String>,
    /// Grant a newly installed plugin the whole organization (no group scope).
    pub whole_organization: bool,
    /// Allow installing an older version than the one installed.
    pub allow_downgrade: bool,
}

/// What an install did.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The plugin's name in the config.
    pub name: String,
    /// The version installed.
    pub version: String,
    /// The package digest it is pinned to.
    pub digest: String,
    /// Where the package was stored.
    pub dir: PathBuf,
    /// Who vetted it.
    pub vetting: Vetting,
    /// The version it replaced, for an upgrade.
    pub previous: Option<String>,
    /// Whether the version installed is older than the one it replaced.
    pub downgrade: bool,
    /// The groups a first install limited the grant to (empty: the whole organization).
    pub groups: Vec<String>,
    /// What the component imports that the manifest does not ask for, and the like.
    pub warnings: Vec<String>,
    /// What changed from the package it replaced (see [`levelhost_packages::package::diff`]);
    /// empty for a first install or when it replaced a loose component.
    pub changes: Vec<String>,
    /// The capabilities granted by this install (first installs only).
    pub granted: Vec<Capability>,
    /// Capabilities the manifest asks for that the grant does not give.
    pub not_granted: Vec<Capability>,
}

/// Installs `package` into the configuration at `config_path`.
pub fn install(
    config_path: &Path,
    package: &Package,
    options: &InstallOptions,
) -> Result<Installed, InstallError> {
    let config = HostConfig::load(config_path)?;
    let vetting = config.trust.verify(package)?;
    let warnings = package.check_capabilities()?;
    let name = options
        .name
        .clone()
        .unwrap_or_else(|| package.manifest.name.clone());
    let previous = config.plugins.get(&name);
    let downgrade = previous
        .is_some_and(|p| version_key(&package.manifest.version) < version_key(&p.manifest.version));
    if let (true, Some(p)) = (downgrade && !options.allow_downgrade, previous) {
        return Err(InstallError::Choice(format!(
            "{name} {} is older than the installed {}; nothing was changed (to go back to it, pass --allow-downgrade)",
            package.manifest.version, p.manifest.version
        )));
    }
    if previous.is_none() && options.groups.is_empty() && !options.whole_organization {
        return Err(InstallError::Choice(format!(
            "say how far {name}'s grant reaches: --group NAME (repeatable) limits it to those groups and their subgroups, --whole-organization gives it every device and group; nothing was changed"
        )));
    }
    // Read before the new package is stored, which may replace the old one's directory.
    let changes = previous
        .and_then(|p| match &p.source {
            PluginSource::Package { dir, .. } => Package::open(dir).ok(),
            PluginSource::Component(_) => None,
        })
        .and_then(|old| levelhost_packages::package::diff(&old, package).ok())
        .unwrap_or_default();

    let base = config_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let hex = package.digest.trim_start_matches("sha256:");
    let relative = format!(
        "{STORE_DIR}/{name}/{}-{}",
        package.manifest.version,
        &hex[..12.min(hex.len())]
    );
    let dir = base.join(&relative);
    let edit_error = |message: String| InstallError::Edit {
        path: config_path.to_owned(),
        message,
    };
    let mut doc = read_config(config_path)?;
    let plugins = doc
        .entry("plugins")
        .or_insert_with(|| {
            let mut table = toml_edit::Table::new();
            table.set_implicit(true);
            toml_edit::Item::Table(table)
        })
        .as_table_like_mut()
        .ok_or_else(|| edit_error("plugins is not a table".to_owned()))?;
    let entry = plugins
        .entry(&name)
        .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
        .as_table_like_mut()
        .ok_or_else(|| edit_error(format!("plugins.{name} is not a table")))?;
    let mut granted = Vec::new();
    if previous.is_none() {
        let key = match &options.key {
            Some(key) => key.clone(),
            None if config.keys.len() == 1 => config.keys.keys().cloned().collect(),
            None => {
                return Err(InstallError::Choice(format!(
                    "choose the key {name} uses with --key (defined: {})",
                    config.keys.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        };
        entry.insert("key", toml_edit::value(key));
        let mut caps = toml_edit::Array::new();
        for cap in &package.manifest.capabilities {
            caps.push(cap.to_string());
            granted.push(*cap);
        }
        entry.insert("capabilities", toml_edit::value(caps));
        if !options.groups.is_empty() {
            let mut scopes = toml_edit::Table::new();
            let groups: toml_edit::Array = options.groups.iter().map(String::as_str).collect();
            scopes.insert("groups", toml_edit::value(groups));
            entry.insert("scopes", toml_edit::Item::Table(scopes));
        }
    }
    entry.remove("component");
    entry.remove("manifest");
    entry.insert("package", toml_edit::value(relative));
    entry.insert("digest", toml_edit::value(package.digest.clone()));

    let created = !dir.exists();
    package.write(&dir)?;
    // Undone if the config cannot take the package, so a refused install leaves nothing behind.
    let undo = |e: InstallError| {
        if created {
            let _ = std::fs::remove_dir_all(&dir);
            if let Some(parent) = dir.parent() {
                let _ = std::fs::remove_dir(parent); // only if empty
            }
        }
        e
    };

    let checked = replace_config(config_path, &doc).map_err(undo)?;
    let installed = checked
        .plugins
        .get(&name)
        .ok_or_else(|| edit_error(format!("plugins.{name} is missing after the edit")))?;
    Ok(Installed {
        name: name.clone(),
        version: package.manifest.version.clone(),
        digest: package.digest.clone(),
        dir,
        vetting,
        previous: previous.map(|p| p.manifest.version.clone()),
        downgrade,
        groups: if previous.is_none() {
            options.groups.clone()
        } else {
            Vec::new()
        },
        warnings,
        changes,
        granted,
        not_granted: installed.not_granted(),
    })
}

/// A `MAJOR.MINOR.PATCH` version as numbers, for ordering (the manifest has checked its form).
fn version_key(version: &str) -> Vec<u64> {
    version
        .split('.')
        .map(|part| part.parse().unwrap_or(0))
        .collect()
}

/// The config as a document to edit, its comments and layout kept.
fn read_config(config_path: &Path) -> Result<toml_edit::DocumentMut, InstallError> {
    let edit_error = |message: String| InstallError::Edit {
        path: config_path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(config_path)
        .map_err(|e| edit_error(format!("cannot read: {e}")))?;
    text.parse()
        .map_err(|e| edit_error(format!("cannot edit: {e}")))
}

/// Writes `doc` beside the config, checks it as a config, then replaces the
/// config with it: a change that would leave the config invalid changes nothing.
fn replace_config(
    config_path: &Path,
    doc: &toml_edit::DocumentMut,
) -> Result<HostConfig, InstallError> {
    let edit_error = |message: String| InstallError::Edit {
        path: config_path.to_owned(),
        message,
    };
    let base = config_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = base.join(format!(
        ".{}.edit-{:016x}",
        config_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "levelhost.toml".to_owned()),
        rand::random::<u64>()
    ));
    std::fs::write(&staging, doc.to_string())
        .map_err(|e| edit_error(format!("cannot write {}: {e}", staging.display())))?;
    let checked = HostConfig::load(&staging).map_err(|mut e| {
        e.file = config_path.to_owned();
        InstallError::WouldBreak(e)
    });
    let checked = match checked {
        Ok(checked) => checked,
        Err(e) => {
            let _ = std::fs::remove_file(&staging);
            return Err(e);
        }
    };
    std::fs::rename(&staging, config_path).map_err(|e| {
        let _ = std::fs::remove_file(&staging);
        edit_error(format!("cannot replace: {e}"))
    })?;
    Ok(checked)
}

/// Writes `hash` as client `name`'s `client_key` (replacing any key it had),
/// checking the config as it would be before it is replaced.
pub fn set_client_key(
    config_path: &Path,
    name: &str,
    hash: &levelhost_gateway::KeyHash,
) -> Result<(), InstallError> {
    let config = HostConfig::load(config_path)?;
    if !config.clients.contains_key(name) {
        return Err(InstallError::Choice(format!(
            "{}: no client {name:?}: add [clients.{name}] with its key and capabilities first (clients: {})",
            config_path.display(),
            config
                .clients
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut doc = read_config(config_path)?;
    let client = doc
        .get_mut("clients")
        .and_then(|c| c.get_mut(name))
        .and_then(toml_edit::Item::as_table_like_mut)
        .ok_or_else(|| InstallError::Edit {
            path: config_path.to_owned(),
            message: format!("cannot find [clients.{name}] to edit"),
        })?;
    client.insert("client_key", toml_edit::value(hash.to_string()));
    replace_config(config_path, &doc)?;
    Ok(())
}

/// Removes plugin `name` from the config (its `[plugins.NAME]` tables). Its
/// packages stay in the store until `prune`, its runs in the history, and
/// its state until it is purged.
pub fn uninstall(config_path: &Path, name: &str) -> Result<(), InstallError> {
    let config = HostConfig::load(config_path)?;
    if !config.plugins.contains_key(name) {
        return Err(InstallError::Choice(format!(
            "{} installs no plugin {name} (installed: {})",
            config_path.display(),
            config
                .plugins
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let edit_error = |message: String| InstallError::Edit {
        path: config_path.to_owned(),
        message,
    };
    let mut doc = read_config(config_path)?;
    let plugins = doc
        .get_mut("plugins")
        .and_then(toml_edit::Item::as_table_like_mut)
        .ok_or_else(|| edit_error("plugins is not a table".to_owned()))?;
    plugins.remove(name);
    replace_config(config_path, &doc).map(drop)
}

/// Removes the stored packages no plugin in the configuration uses (older
/// versions left by upgrades); returns the directories removed.
pub fn prune(config_path: &Path) -> Result<Vec<PathBuf>, InstallError> {
    let config = HostConfig::load(config_path)?;
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let in_use: Vec<PathBuf> = config
        .plugins
        .values()
        .filter_map(|p| match &p.source {
            PluginSource::Package { dir, .. } => Some(canonical(dir)),
            PluginSource::Component(_) => None,
        })
        .collect();
    let base = config_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let store = base.join(STORE_DIR);
    let subdirs = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| {
                let mut dirs: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect();
                dirs.sort();
                dirs
            })
            .unwrap_or_default()
    };
    let mut removed = Vec::new();
    for name_dir in subdirs(&store) {
        for version_dir in subdirs(&name_dir) {
            if !in_use.contains(&canonical(&version_dir)) {
                std::fs::remove_dir_all(&version_dir).map_err(|e| InstallError::Edit {
                    path: version_dir.clone(),
                    message: format!("cannot remove: {e}"),
                })?;
                removed.push(version_dir);
            }
        }
        let _ = std::fs::remove_dir(&name_dir); // only if now empty
    }
    Ok(removed)
}
