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

/// What probing one key found: whether it works, and with what access,
/// against what the config declares. `key check` and `check` share it.
#[derive(Debug, serde::Serialize)]
pub(crate) struct KeyProbe {
    key: String,
    works: bool,
    access: Option<level_api::KeyAccess>,
    declared: level_api::KeyAccess,
    error: Option<String>,
}

impl KeyProbe {
    /// Probes key `name` of `config` without changing anything in Level.
    pub(crate) async fn run(
        config: &crate::config::HostConfig,
        name: &str,
    ) -> anyhow::Result<Self> {
        let declared = match config
            .keys
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("no key {name} in {}", config.path.display()))?
            .access
        {
            crate::config::Access::ReadOnly => level_api::KeyAccess::ReadOnly,
            crate::config::Access::ReadWrite => level_api::KeyAccess::ReadWrite,
        };
        let outcome = match crate::loader::client(config, name) {
            Ok(client) => client
                .probe_access()
                .await
                .map_err(|e| levelhost_core::Chain(&e).to_string()),
            Err(e) => Err(levelhost_core::Chain(&e).to_string()),
        };
        Ok(Self {
            key: name.to_owned(),
            works: outcome.is_ok(),
            access: outcome.as_ref().ok().copied(),
            declared,
            error: outcome.err(),
        })
    }

    /// What is wrong with the key, if anything.
    pub(crate) fn problem(&self) -> Option<String> {
        let name = &self.key;
        match (&self.error, self.access) {
            (Some(e), _) => Some(format!("key {name} does not work: {e}")),
            (None, Some(access)) if access != self.declared => Some(format!(
                "the config declares key {name} {}, but Level treats it as {}",
                self.declared, access
            )),
            _ => None,
        }
    }

    /// The key's state in one line, for people.
    pub(crate) fn in_words(&self) -> String {
        match (self.problem(), self.access) {
            (Some(problem), _) => problem,
            (None, Some(access)) => format!(
                "key {} works: {} (as the config declares; probed without changing anything)",
                self.key, access
            ),
            (None, None) => format!("key {} was not probed", self.key),
        }
    }
}

/// `levelhost key check`.
async fn check(name: &str, config: &std::path::Path, json: bool) -> anyhow::Result<ExitStatus> {
    let config = crate::config::HostConfig::load(config)?;
    let probe = KeyProbe::run(&config, name).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&probe)?);
    }
    match (probe.problem(), probe.access) {
        (Some(problem), access) => {
            if let (false, Some(access)) = (json, access) {
                println!("key {name} works: {access}");
            }
            eprintln!("error: {problem}");
            Ok(ExitStatus::Failure)
        }
        (None, _) => {
            if !json {
                println!("{}", probe.in_words());
            }
            Ok(ExitStatus::Success)
        }
    }
}
