//! `levelhost init`: a commented `levelhost.toml` to start from.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;

use super::ExitStatus;
use crate::env_vars::EnvVars;

/// The configuration `init` writes: valid as it is, with no plugins.
const TEMPLATE: &str = include_str!("../../templates/init/levelhost.toml.tmpl");

/// Arguments of `levelhost init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Where to write it; an existing file is never overwritten.
    #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml")]
    pub config: PathBuf,
}

impl InitArgs {
    /// Writes the commented configuration.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.config)
            .with_context(|| {
                format!(
                    "cannot create {} (an existing file is never overwritten)",
                    self.config.display()
                )
            })?;
        file.write_all(TEMPLATE.as_bytes())
            .with_context(|| format!("cannot write {}", self.config.display()))?;
        println!(
            "wrote {}: set LEVEL_READ_KEY (or change [keys]), then `levelhost check`",
            self.config.display()
        );
        Ok(ExitStatus::Success)
    }
}
