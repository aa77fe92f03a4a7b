//! `levelhost catalog`: a shared directory of packages.

use std::path::PathBuf;

use super::ExitStatus;
use super::plugin::{InstallTarget, install_and_report};
use crate::config::HostConfig;
use crate::env_vars::EnvVars;
use levelhost_packages::catalog::{Catalog, CatalogEntry};
use levelhost_packages::package::Package;

/// Arguments of `levelhost catalog`.
#[derive(Debug, clap::Args)]
pub struct CatalogArgs {
    /// The catalog directory.
    #[arg(long, global = true, env = EnvVars::LEVELHOST_CATALOG, default_value = "catalog")]
    pub catalog: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: CatalogCommand,
}

/// `levelhost catalog` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CatalogCommand {
    /// Add a package to the catalog (as NAME/VERSION; a version never changes).
    Add {
        /// The package directory.
        package: PathBuf,
    },
    /// List every package: name, version, digest, signatures.
    List {
        /// Name the signers as the config's [trust] knows them.
        #[arg(long, env = EnvVars::LEVELHOST_CONFIG)]
        config: Option<PathBuf>,
        /// Print a JSON array of `{name, version, digest, description, vetting}`.
        #[arg(long)]
        json: bool,
    },
    /// Find packages whose name or description contains TERM.
    Search {
        /// The text to look for (any case).
        term: String,
        /// Print a JSON array of `{name, version, digest, description, vetting}`.
        #[arg(long)]
        json: bool,
    },
    /// Install NAME (its newest version) or NAME@VERSION from the catalog, pinned by digest.
    Install {
        /// The package: NAME or NAME@VERSION.
        spec: String,
        #[command(flatten)]
        target: InstallTarget,
    },
}

impl CatalogArgs {
    /// Runs the subcommand.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let catalog = Catalog::new(&self.catalog);
        match self.command {
            CatalogCommand::Add { package } => {
                let pkg = Package::open(&package)?;
                for warning in pkg.check_capabilities()? {
                    eprintln!("warning: {warning}");
                }
                let dir = catalog.add(&pkg)?;
                println!(
                    "added {} {} ({}) as {}",
                    pkg.manifest.name,
                    pkg.manifest.version,
                    pkg.digest,
                    dir.display()
                );
                Ok(ExitStatus::Success)
            }
            CatalogCommand::List { config, json } => {
                let trust = match config.filter(|c| c.exists()) {
                    Some(path) => Some(HostConfig::load(&path)?.trust),
                    None => None,
                };
                let listing = catalog.list()?;
                if listing.entries.is_empty() && !json {
                    println!("no packages in {}", catalog.dir.display());
                }
                print_entries(&listing.entries, trust.as_ref(), json)?;
                for broken in &listing.broken {
                    eprintln!("warning: skipped {}", levelhost_core::Chain(broken));
                }
                Ok(ExitStatus::Success)
            }
            CatalogCommand::Search { term, json } => {
                let found = catalog.search(&term)?;
                if found.is_empty() && !json {
                    println!("nothing in {} matches {term:?}", catalog.dir.display());
                }
                print_entries(&found, None, json)?;
                Ok(ExitStatus::Success)
            }
            CatalogCommand::Install { spec, target } => {
                let pkg = catalog.find(&spec)?;
                install_and_report(&pkg, &target)
            }
        }
    }
}

/// One catalog entry as `list` and `search` report it, and its `--json` shape.
#[derive(Debug, serde::Serialize)]
struct EntryLine<'a> {
    name: &'a str,
    version: &'a str,
    digest: &'a str,
    description: &'a str,
    vetting: String,
}

fn print_entries(
    entries: &[CatalogEntry],
    trust: Option<&levelhost_packages::trust::TrustPolicy>,
    json: bool,
) -> anyhow::Result<()> {
    let lines: Vec<EntryLine<'_>> = entries
        .iter()
        .map(|entry| {
            let p = &entry.package;
            let vetting = match trust.map(|t| t.verify(p)) {
                Some(Ok(v)) => v.to_string(),
                Some(Err(e)) => format!("not vetted: {e}"),
                None if p.signatures.is_empty() => "unsigned".to_owned(),
                None => format!(
                    "signed by key {}",
                    p.signatures
                        .iter()
                        .map(|(_, s)| s.key.id())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            EntryLine {
                name: &p.manifest.name,
                version: &p.manifest.version,
                digest: &p.digest,
                description: &p.manifest.description,
                vetting,
            }
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&lines)?);
        return Ok(());
    }
    for line in &lines {
        let short = line.digest.get(..19).unwrap_or(line.digest);
        println!(
            "{} {} {short}  {}  [{}]",
            line.name, line.version, line.description, line.vetting
        );
    }
    Ok(())
}
