//! `strata device add|list|remove`: per-device MQTT passwords in the data directory's device
//! credentials file (`<data_dir>/mqtt/devices.json`, see `crate::mqtt::devices`). Offline
//! edits of the file; a running server picks them up at the device's next CONNECT.

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::ConfigArgs;
use strata_mqtt::devices;
use strata_server::config::Config;

#[derive(Debug, Args)]
pub struct DeviceArgs {
    #[command(subcommand)]
    pub command: DeviceCommand,
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Register a device and print its MQTT password (once: only its hash is stored).
    Add {
        #[command(flatten)]
        config: ConfigArgs,
        /// The device id: the MQTT username (or client id) it connects with.
        device: String,
        /// A note to recognise the device by in `list`.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List registered devices (never their passwords).
    List {
        #[command(flatten)]
        config: ConfigArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a device: its password stops working at its next CONNECT (open connections stay).
    Remove {
        #[command(flatten)]
        config: ConfigArgs,
        device: String,
    },
}

fn env_vars() -> Vec<(String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect()
}

fn credentials_path(args: &ConfigArgs) -> anyhow::Result<std::path::PathBuf> {
    let overrides = args.overrides().map_err(anyhow::Error::msg)?;
    let config = Config::load(args.config.as_deref(), env_vars(), &overrides).context("configuration")?;
    Ok(devices::path_in(&config.data_dir))
}

pub fn run(args: DeviceArgs) -> anyhow::Result<()> {
    match args.command {
        DeviceCommand::Add { config, device, description } => {
            let path = credentials_path(&config)?;
            let (password, rec) = devices::add(&path, &device, &description)?;
            // The password alone on stdout, so scripts can capture it; the rest on stderr.
            println!("{password}");
            eprintln!(
                "registered device {} in {}; give it this password now: it cannot be shown again",
                rec.device,
                path.display()
            );
        }
        DeviceCommand::List { config, json } => {
            let list = devices::load(&credentials_path(&config)?)?;
            if json {
                let items: Vec<_> = list
                    .iter()
                    .map(|d| serde_json::json!({"device": d.device, "created": d.created, "description": d.description}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                println!("{:<32}  {:<20}  DESCRIPTION", "DEVICE", "CREATED");
                for d in &list {
                    println!("{:<32}  {:<20}  {}", d.device, d.created, d.description);
                }
            }
        }
        DeviceCommand::Remove { config, device } => {
            let rec = devices::remove(&credentials_path(&config)?, &device)?;
            println!("removed device {}", rec.device);
        }
    }
    Ok(())
}
