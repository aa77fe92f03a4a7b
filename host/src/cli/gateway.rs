//! `levelhost gateway` and `levelhost client key`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use super::ExitStatus;
use crate::config::HostConfig;
use crate::env_vars::EnvVars;

/// Arguments of `levelhost gateway`.
#[derive(Debug, clap::Args)]
pub struct GatewayArgs {
    /// The configuration file.
    #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml")]
    pub config: PathBuf,
}

/// Arguments of `levelhost client`.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ClientCommand {
    /// Make a new key for client NAME: printed once, its hash written into
    /// `[clients.NAME]` (replacing the old key, which a running gateway
    /// refuses from its next reload on).
    Key {
        /// The client, as `[clients.NAME]` names it.
        name: String,
        /// The configuration file.
        #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml")]
        config: PathBuf,
    },
}

impl ClientArgs {
    /// Runs the subcommand.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        match self.command {
            ClientCommand::Key { name, config } => {
                let key = levelhost_gateway::ClientKey::generate();
                crate::install::set_client_key(&config, &name, &key.hash())?;
                eprintln!(
                    "client {name}: new key below, shown this once; {} keeps only its hash.\n\
                     A running gateway takes it on its next reload (SIGHUP); the old key is refused from then on.",
                    config.display()
                );
                println!("{}", key.text);
                Ok(ExitStatus::Success)
            }
        }
    }
}

impl GatewayArgs {
    /// Serves Level's API to the configured clients until SIGTERM or
    /// Ctrl-C; reloads clients and keys on SIGHUP.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let config = HostConfig::load(&self.config)?;
        let addr = config.gateway.listen_addr().map_err(anyhow::Error::msg)?;
        let certificates = match &config.gateway.tls {
            Some((cert, key)) => Some(levelhost_gateway::tls::Certificates::new(
                levelhost_gateway::tls::server_config(cert, key)?,
            )),
            None => None,
        };
        let mut stop = super::signal::listen();
        let mut hangups = super::signal::hangups();
        let mut clients = crate::loader::Clients::of(&config, None).await?;
        let (specs, level_keys) = clients.gateway(&config)?;
        // The audit `serve` and `run` write: the file, or the shared database.
        let audit = config.records.open_audit().await?;
        let count = specs.len();
        let gateway = Arc::new(levelhost_gateway::Gateway::new(
            specs,
            &level_keys.iter().map(String::as_str).collect::<Vec<_>>(),
            Some(audit),
        ));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("{}: cannot listen on {addr}", config.gateway.addr_at))?;
        let bound = listener.local_addr()?;
        let scheme = if certificates.is_some() {
            "https"
        } else {
            "http"
        };
        println!("levelhost gateway on {scheme}://{bound}/v2 ({count} clients)");
        // The same HTTP stack as serve's: a header read timeout, a cap on
        // open connections, and open requests answered at shutdown.
        let (stopping, stopped) = tokio::sync::watch::channel(false);
        let router = gateway.clone().router();
        let (read_timeout, max_connections) =
            (config.serve.read_timeout, config.serve.max_connections);
        let server = match &certificates {
            Some(certificates) => tokio::spawn(levelhost_serve::accept_loop(
                levelhost_gateway::tls::TlsListener::new(listener, certificates.clone())?,
                router,
                stopped,
                read_timeout,
                max_connections,
            )),
            None => tokio::spawn(levelhost_serve::accept_loop(
                listener,
                router,
                stopped,
                read_timeout,
                max_connections,
            )),
        };
        let signal = loop {
            tokio::select! {
                signal = stop.stopped() => break signal,
                () = hangups.next() => {
                    tracing::info!("SIGHUP: reloading {}", self.config.display());
                    let reloaded = async {
                        let config = HostConfig::load(&self.config)?;
                        let now = crate::loader::Clients::of(&config, Some(&clients)).await?;
                        let (specs, level_keys) = now.gateway(&config)?;
                        // The certificate and key are read again (a renewed certificate).
                        let tls = match (&config.gateway.tls, &certificates) {
                            (Some((cert, key)), Some(_)) => {
                                Some(levelhost_gateway::tls::server_config(cert, key)?)
                            }
                            _ => None,
                        };
                        anyhow::Ok((now, specs, level_keys, tls))
                    }
                    .await;
                    match reloaded {
                        Ok((now, specs, level_keys, tls)) => {
                            if let (Some(certificates), Some(tls)) = (&certificates, tls) {
                                certificates.replace(tls);
                            }
                            gateway.replace(
                                specs,
                                &level_keys.iter().map(String::as_str).collect::<Vec<_>>(),
                            );
                            clients = now;
                            tracing::info!("reloaded: the new clients and keys are in use");
                        }
                        Err(e) => tracing::error!(
                            "reload refused, the running configuration stays in use: {e:#}"
                        ),
                    }
                }
            }
        };
        // Requests already in are answered (and audited) before the process ends.
        tracing::info!("{signal}: stopping the gateway; answering the requests already in");
        let _ = stopping.send(true);
        if tokio::time::timeout(std::time::Duration::from_secs(30), server)
            .await
            .is_err()
        {
            tracing::warn!("requests still open after 30 s were cut off");
        }
        Ok(ExitStatus::Success)
    }
}
