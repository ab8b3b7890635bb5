//! Flags and helpers shared by the client commands.

use anyhow::Context;
use spool_client::{Client, ClientConfig};

/// Where the cluster is.
#[derive(Debug, Clone, clap::Args)]
pub struct Connect {
    /// Bootstrap broker(s), HOST:PORT[,HOST:PORT...].
    #[arg(
        short = 'b',
        long = "bootstrap-server",
        env = "SPOOL_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        value_name = "HOST:PORT",
        global = true
    )]
    pub bootstrap: String,
}

impl Connect {
    /// Connects and fetches metadata, so a wrong address fails here with a readable message.
    pub async fn client(&self) -> anyhow::Result<Client> {
        for server in self.bootstrap.split(',') {
            let ok = server
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            anyhow::ensure!(ok, "bootstrap server {server:?} is not HOST:PORT");
        }
        let mut config = ClientConfig::new(&self.bootstrap);
        config.client_id = "spool-cli".into();
        Client::connect(config)
            .await
            .with_context(|| format!("cannot reach the cluster at {}", self.bootstrap))
    }
}

/// Parses `key=value`.
pub fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}
