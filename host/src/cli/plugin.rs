//! `levelhost plugin`: pack, sign, verify, diff, push, pull and install packages.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::ExitStatus;
use crate::config::{HostConfig, PluginSource};
use crate::env_vars::EnvVars;
use crate::install::{InstallOptions, install, prune};
use levelhost_core::capability::join;
use levelhost_packages::oci::{self, RegistryOptions};
use levelhost_packages::package::{self, MANIFEST_FILE, Package, README_FILE};
use levelhost_packages::trust::{SecretKey, TrustPolicy};

/// Arguments of `levelhost plugin`.
#[derive(Debug, clap::Args)]
pub struct PluginArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: PluginCommand,
}

/// `levelhost plugin` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Make a package directory from a component and its plugin.toml (and README.md).
    Pack {
        /// The component.
        #[arg(long, default_value = "plugin.wasm")]
        component: PathBuf,
        /// The manifest.
        #[arg(long, default_value = MANIFEST_FILE)]
        manifest: PathBuf,
        /// A README (default: README.md beside the manifest, if there is one).
        #[arg(long)]
        readme: Option<PathBuf>,
        /// Where to write the package (default: NAME-VERSION).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Sign a package's digest with a reviewer's secret key (from `levelhost key generate`).
    Sign {
        /// The package directory.
        package: PathBuf,
        /// The secret key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Check a package's signatures against the config's trust policy.
    Verify {
        /// The package directory.
        package: PathBuf,
        /// The configuration whose [trust] decides.
        #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml")]
        config: PathBuf,
        /// Print `{name, version, digest, verified, vetting, error}` as JSON
        /// (a refused package still exits 2, after printing it).
        #[arg(long)]
        json: bool,
    },
    /// Show what changed between two packages: capabilities, imports, digest.
    Diff {
        /// The old package directory, or a plugin installed in the config, by name.
        old: String,
        /// The new package directory.
        new: PathBuf,
        /// The configuration, for an installed plugin.
        #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml")]
        config: PathBuf,
        /// Print the changes as JSON: `{same, name, version, digest, capabilities_added,
        /// capabilities_removed, imports_added, imports_removed, input_schema_changed,
        /// component}`, each changed value an `[old, new]` pair and `null` when unchanged.
        #[arg(long)]
        json: bool,
    },
    /// Push a package to an OCI registry, such as 127.0.0.1:5000/plugins/name:0.1.0.
    Push {
        /// The package directory.
        package: PathBuf,
        /// The OCI reference.
        reference: String,
        /// Use plain HTTP for a registry that is not on loopback.
        #[arg(long)]
        insecure: bool,
    },
    /// Pull a package from an OCI registry into a directory (nothing is trusted until install).
    Pull {
        /// The OCI reference.
        reference: String,
        /// Where to write it (default: NAME-VERSION).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Use plain HTTP for a registry that is not on loopback.
        #[arg(long)]
        insecure: bool,
    },
    /// List the plugins the config installs: name, version, where from, key, capabilities.
    List {
        /// The configuration.
        #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml")]
        config: PathBuf,
        /// Print a JSON array of `{name, version, package, pinned, component, key, capabilities, scoped}`.
        #[arg(long)]
        json: bool,
    },
    /// Remove stored packages no plugin in the config uses (versions left by upgrades).
    Prune {
        /// The configuration.
        #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml")]
        config: PathBuf,
    },
    /// Remove a plugin from the config; its state is kept unless --purge-state (then removed, audited).
    Uninstall {
        /// The plugin's name in the config.
        name: String,
        /// Also delete the plugin's state (every key), recorded in the audit.
        #[arg(long)]
        purge_state: bool,
        /// The configuration.
        #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml")]
        config: PathBuf,
    },
    /// Install a vetted package into the config, pinned by digest (an upgrade keeps the grant).
    Install {
        /// The package directory.
        package: PathBuf,
        #[command(flatten)]
        target: InstallTarget,
    },
}

/// Where and how to install.
#[derive(Debug, clap::Args)]
pub struct InstallTarget {
    /// The configuration to install into.
    #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml")]
    pub config: PathBuf,
    /// The plugin's name in the config (default: the package's name).
    #[arg(long)]
    pub name: Option<String>,
    /// The key a newly installed plugin uses (default: the only key).
    #[arg(long)]
    pub key: Option<String>,
    /// Limit a newly installed plugin's grant to this group and its subgroups (repeatable).
    #[arg(long = "group", value_name = "NAME")]
    pub groups: Vec<String>,
    /// Give a newly installed plugin the whole organization (no group scope).
    #[arg(long, conflicts_with = "groups")]
    pub whole_organization: bool,
    /// Install a version older than the one installed.
    #[arg(long)]
    pub allow_downgrade: bool,
}

impl PluginArgs {
    /// Runs the subcommand.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        match self.command {
            PluginCommand::Pack {
                component,
                manifest,
                readme,
                out,
            } => pack(&component, &manifest, readme, out),
            PluginCommand::Sign { package, key } => {
                let key = SecretKey::load(&key)?;
                let mut pkg = Package::open(&package)?;
                let path = pkg.sign_in_place(key.sign(&pkg.digest))?;
                println!(
                    "signed {} {} ({}) as key {}: {}",
                    pkg.manifest.name,
                    pkg.manifest.version,
                    pkg.digest,
                    key.public().id(),
                    path.display()
                );
                Ok(ExitStatus::Success)
            }
            PluginCommand::Verify {
                package,
                config,
                json,
            } => {
                let trust = trust_policy(&config)?;
                let pkg = Package::open(&package)?;
                let verdict = trust.verify(&pkg);
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&serde_json::json!({
                            "name": pkg.manifest.name,
                            "version": pkg.manifest.version,
                            "digest": pkg.digest,
                            "verified": verdict.is_ok(),
                            "vetting": verdict.as_ref().ok().map(ToString::to_string),
                            "error": verdict.as_ref().err().map(ToString::to_string),
                        }))?
                    );
                } else {
                    println!(
                        "{} {} {}",
                        pkg.manifest.name, pkg.manifest.version, pkg.digest
                    );
                }
                // A refusal exits 2, as install's does: the package cannot be used.
                let vetting = verdict.map_err(|e| anyhow::anyhow!("refused: {e}"))?;
                if !json {
                    println!("OK: {vetting}");
                }
                Ok(ExitStatus::Success)
            }
            PluginCommand::Diff {
                old,
                new,
                config,
                json,
            } => {
                let old = if Path::new(&old).is_dir() {
                    Package::open(Path::new(&old))?
                } else {
                    installed_package(&config, &old)?
                };
                let new = Package::open(&new)?;
                let changes = package::PackageDiff::of(&old, &new)?;
                let lines = changes.lines();
                if json {
                    let mut value = serde_json::to_value(&changes)?;
                    value["same"] = lines.is_empty().into();
                    println!("{}", serde_json::to_string_pretty(&value)?);
                    return Ok(ExitStatus::Success);
                }
                if lines.is_empty() {
                    println!("no changes: the same package ({})", new.digest);
                }
                for line in lines {
                    println!("{line}");
                }
                Ok(ExitStatus::Success)
            }
            PluginCommand::Push {
                package,
                reference,
                insecure,
            } => {
                let pkg = Package::open(&package)?;
                let url = oci::push(&pkg, &reference, registry_options(insecure)).await?;
                println!(
                    "pushed {} {} ({}) to {reference}",
                    pkg.manifest.name, pkg.manifest.version, pkg.digest
                );
                println!("manifest: {url}");
                Ok(ExitStatus::Success)
            }
            PluginCommand::Pull {
                reference,
                out,
                insecure,
            } => {
                let pkg = oci::pull(&reference, registry_options(insecure)).await?;
                let dir = match out {
                    Some(out) => out,
                    None => {
                        let dir = PathBuf::from(pkg.default_dir_name());
                        if dir.exists() {
                            bail!(
                                "{} already exists; pass --out to choose where",
                                dir.display()
                            );
                        }
                        dir
                    }
                };
                pkg.write(&dir)?;
                println!(
                    "pulled {} {} ({}) into {}, {} signatures",
                    pkg.manifest.name,
                    pkg.manifest.version,
                    pkg.digest,
                    dir.display(),
                    pkg.signatures.len()
                );
                Ok(ExitStatus::Success)
            }
            PluginCommand::List { config, json } => list(&config, json),
            PluginCommand::Prune { config } => {
                let removed = prune(&config)?;
                if removed.is_empty() {
                    println!("nothing to remove: every stored package is in use");
                }
                for dir in removed {
                    println!("removed {}", dir.display());
                }
                Ok(ExitStatus::Success)
            }
            PluginCommand::Install { package, target } => {
                let pkg = Package::open(&package)?;
                install_and_report(&pkg, &target)
            }
            PluginCommand::Uninstall {
                name,
                purge_state,
                config,
            } => {
                let records = crate::config::RecordPaths::load(&config)?;
                crate::install::uninstall(&config, &name)?;
                eprintln!(
                    "removed {name} from {}; a running serve drops it on reload",
                    config.display()
                );
                let history = records.open_history().await?;
                if purge_state {
                    let removed = super::state::purge(&records, &history, &name).await?;
                    eprintln!("removed {removed} keys of {name}'s state");
                } else {
                    let usage = history.state_usage(&name).await?;
                    if usage.keys > 0 {
                        eprintln!(
                            "{name}'s state ({} keys) is kept for a reinstall; `levelhost state purge {name}` removes it",
                            usage.keys
                        );
                    }
                }
                Ok(ExitStatus::Success)
            }
        }
    }
}

fn pack(
    component: &Path,
    manifest: &Path,
    readme: Option<PathBuf>,
    out: Option<PathBuf>,
) -> anyhow::Result<ExitStatus> {
    let bytes =
        std::fs::read(component).with_context(|| format!("cannot read {}", component.display()))?;
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let readme = match readme {
        Some(path) => Some(
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        None => std::fs::read_to_string(manifest.with_file_name(README_FILE)).ok(),
    };
    let pkg = Package::from_parts(bytes, text, readme, manifest)?;
    for warning in check_against_manifest(&pkg, component, manifest)? {
        eprintln!("warning: {warning}");
    }
    let out = out.unwrap_or_else(|| PathBuf::from(pkg.default_dir_name()));
    pkg.write(&out)?;
    println!(
        "packed {} {} into {}",
        pkg.manifest.name,
        pkg.manifest.version,
        out.display()
    );
    println!("digest {}", pkg.digest);
    Ok(ExitStatus::Success)
}

/// One installed plugin as `plugin list` reports it, and its `--json` shape.
#[derive(Debug, serde::Serialize)]
struct Installed {
    name: String,
    version: String,
    package: Option<PathBuf>,
    pinned: Option<String>,
    component: Option<PathBuf>,
    key: String,
    capabilities: levelhost_core::capability::CapabilitySet,
    /// Whether any scope narrows the grant.
    scoped: bool,
}

fn list(config: &Path, json: bool) -> anyhow::Result<ExitStatus> {
    let config = HostConfig::load(config)?;
    let installed: Vec<Installed> = config
        .plugins
        .values()
        .map(|p| {
            let (package, pinned, component) = match &p.source {
                PluginSource::Package { dir, pinned } => (Some(dir.clone()), pinned.clone(), None),
                PluginSource::Component(path) => (None, None, Some(path.clone())),
            };
            let scopes = &p.grant.scopes;
            Installed {
                name: p.name.clone(),
                version: p.manifest.version.clone(),
                package,
                pinned,
                component,
                key: p.key.clone(),
                capabilities: p.grant.capabilities,
                scoped: scopes.groups.is_some()
                    || scopes.tags.is_some()
                    || scopes.custom_fields.is_some()
                    || scopes.automations.is_some(),
            }
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&installed)?);
        return Ok(ExitStatus::Success);
    }
    let mut table =
        super::table::Table::new(&["PLUGIN", "VERSION", "KEY", "SCOPED", "FROM", "CAPABILITIES"]);
    for p in &installed {
        let from = match (&p.package, &p.component) {
            (Some(dir), _) => dir.display().to_string(),
            (None, Some(path)) => format!("{} (unsigned)", path.display()),
            (None, None) => String::new(),
        };
        table.row(vec![
            p.name.clone(),
            p.version.clone(),
            p.key.clone(),
            if p.scoped { "yes" } else { "no" }.to_owned(),
            from,
            join(&p.capabilities),
        ]);
    }
    print!("{}", table.render());
    Ok(ExitStatus::Success)
}

/// Compiles a package's component against the plugin world, so a WIT
/// mismatch is found by the author, and returns the warnings about what it
/// imports against what its manifest asks for. `pack` and `build` both check
/// a plugin this way.
pub(crate) fn check_against_manifest(
    pkg: &Package,
    component: &Path,
    manifest: &Path,
) -> anyhow::Result<Vec<String>> {
    let runner = super::runner()?;
    runner
        .load(&pkg.manifest.name, &pkg.component)
        .with_context(|| format!("{}", component.display()))?;
    pkg.check_capabilities().map_err(|e| match e {
        package::PackageError::Invalid { message, .. } => {
            anyhow::anyhow!("{}: {message}", manifest.display())
        }
        other => other.into(),
    })
}

fn trust_policy(config: &Path) -> anyhow::Result<TrustPolicy> {
    if !config.exists() {
        bail!(
            "{} does not exist: the trust policy ([trust] reviewers, revoked) is read from the configuration; pass --config",
            config.display()
        );
    }
    Ok(HostConfig::load(config)?.trust)
}

fn installed_package(config: &Path, name: &str) -> anyhow::Result<Package> {
    let config = HostConfig::load(config)?;
    let plugin = config.plugin(name)?;
    match &plugin.source {
        PluginSource::Package { dir, .. } => Ok(Package::open(dir)?),
        PluginSource::Component(path) => bail!(
            "plugin {name} is a loose component ({}), not a package; give its package directory instead",
            path.display()
        ),
    }
}

/// Installs a package and says what changed, what was granted and what was not.
pub(crate) fn install_and_report(
    pkg: &Package,
    target: &InstallTarget,
) -> anyhow::Result<ExitStatus> {
    let options = InstallOptions {
        name: target.name.clone(),
        key: target.key.clone(),
        groups: target.groups.clone(),
        whole_organization: target.whole_organization,
        allow_downgrade: target.allow_downgrade,
    };
    let installed = install(&target.config, pkg, &options)?;
    for warning in &installed.warnings {
        eprintln!("warning: {warning}");
    }
    println!(
        "installed {} {} ({}), {}",
        installed.name, installed.version, installed.digest, installed.vetting
    );
    println!("  stored in {}", installed.dir.display());
    if let Some(version) = &installed.previous {
        let moved = if installed.downgrade {
            "downgraded"
        } else if *version == installed.version {
            "replaced"
        } else {
            "upgraded"
        };
        println!("  {moved} from {version}; the grant is unchanged");
        for line in &installed.changes {
            println!("  {line}");
        }
    }
    if !installed.granted.is_empty() {
        let reach = if installed.groups.is_empty() {
            "in the whole organization".to_owned()
        } else {
            format!("in group {} and its subgroups", installed.groups.join(", "))
        };
        println!("  granted: {} {reach}", join(&installed.granted));
    }
    if !installed.not_granted.is_empty() {
        println!(
            "  not granted: {} (calls that need them are denied; to allow them, add them to plugins.{}.capabilities in {})",
            join(&installed.not_granted),
            installed.name,
            target.config.display()
        );
    }
    Ok(ExitStatus::Success)
}

/// Registry settings: `--insecure`, and credentials from
/// `LEVELHOST_REGISTRY_USERNAME` and `LEVELHOST_REGISTRY_PASSWORD` (anonymous without a user name).
fn registry_options(insecure: bool) -> RegistryOptions {
    let credentials = match (
        EnvVars::var(EnvVars::LEVELHOST_REGISTRY_USERNAME),
        EnvVars::var(EnvVars::LEVELHOST_REGISTRY_PASSWORD),
    ) {
        (Some(username), Some(password)) if !username.is_empty() => {
            Some(oci::Credentials { username, password })
        }
        _ => None,
    };
    RegistryOptions {
        insecure,
        credentials,
    }
}
