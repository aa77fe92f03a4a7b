//! `levelhost key generate`: a reviewer's signing key pair.

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
}

impl KeyArgs {
    /// Runs the subcommand.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        match self.command {
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
