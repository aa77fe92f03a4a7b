//! `levelhost key generate`: a reviewer's signing key pair; `levelhost key
//! check NAME`: whether a Level API key in the config works, and may write.

use std::path::PathBuf;

use super::ExitStatus;
use levelhost_packages::trust::write_key_pair;

/// Arguments of `levelhost key`.
#[derive(Debug, clap::Args)]
pub struct KeyArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: KeyCommand,
}

/// `levelhost key` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Make a new ed25519 key pair for signing packages: NAME.key (secret, owner-only) and NAME.pub.
    Generate {
        /// The files' path without extension, such as `alice` or `keys/alice`.
        name: PathBuf,
    },
    /// Ask Level whether a key of the config works and whether it is read-only or
    /// read-write (probed without changing anything). Exits 1 when it does not
    /// work, or its access is not the one the config declares.
    Check {
        /// The key's name in the config (`[keys.NAME]`).
        name: String,
        /// The configuration file.
        #[arg(long, env = crate::env_vars::EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml")]
        config: PathBuf,
        /// Print `{key, works, access, declared, error}` as JSON.
        #[arg(long)]
        json: bool,
    },
}

impl KeyArgs {
    /// Runs the subcommand.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        match self.command {
            KeyCommand::Check { name, config, json } => check(&name, &config, json).await,
            KeyCommand::Generate { name } => {
                if let Some(parent) = name.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)?;
                }
                let (secret, public, key) = write_key_pair(&name)?;
                let reviewer = name
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "reviewer".to_owned());
                println!("secret key: {} (keep it private)", secret.display());
                println!("public key: {} (id {})", public.display(), key.id());
                println!();
                println!("To trust packages this key signs, add to levelhost.toml:");
                println!();
                println!("[trust.reviewers]");
                println!("{reviewer} = \"{key}\"");
                Ok(ExitStatus::Success)
            }
        }
    }
}

/// `levelhost key check`.
async fn check(name: &str, config: &std::path::Path, json: bool) -> anyhow::Result<ExitStatus> {
    let config = crate::config::HostConfig::load(config)?;
    let declared = config
        .keys
        .get(name)
        .ok_or_else(|| anyhow::anyhow!("no key {name} in {}", config.path.display()))?
        .access;
    let declared = match declared {
        crate::config::Access::ReadOnly => level_api::KeyAccess::ReadOnly,
        crate::config::Access::ReadWrite => level_api::KeyAccess::ReadWrite,
    };
    let outcome = match crate::loader::client(&config, name) {
        Ok(client) => client
            .probe_access()
            .await
            .map_err(|e| levelhost_core::Chain(&e).to_string()),
        Err(e) => Err(levelhost_core::Chain(&e).to_string()),
    };
    let words = |a: level_api::KeyAccess| match a {
        level_api::KeyAccess::ReadOnly => "read-only",
        level_api::KeyAccess::ReadWrite => "read-write",
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "key": name,
                "works": outcome.is_ok(),
                "access": outcome.as_ref().ok(),
                "declared": declared,
                "error": outcome.as_ref().err(),
            }))?
        );
    }
    match outcome {
        Err(e) => {
            eprintln!("error: key {name} does not work: {e}");
            Ok(ExitStatus::Failure)
        }
        Ok(access) if access != declared => {
            if !json {
                println!("key {name} works: {}", words(access));
            }
            eprintln!(
                "error: the config declares key {name} {}, but Level treats it as {}",
                words(declared),
                words(access)
            );
            Ok(ExitStatus::Failure)
        }
        Ok(access) => {
            if !json {
                println!(
                    "key {name} works: {} (as the config declares; probed without changing anything)",
                    words(access)
                );
            }
            Ok(ExitStatus::Success)
        }
    }
}
