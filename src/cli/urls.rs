//! `hookflow urls`: the keys the server uses, readable while it runs.

use super::PlaceArgs;
use clap::ValueEnum;
use hookflow_model::{load_dir, LoadOptions, SecretPolicy};
use hookflow_service::Registry;
use serde_json::json;
use std::process::ExitCode;

/// Output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// A JSON list.
    Json,
}

/// Flags of `urls`.
#[derive(Debug, clap::Args)]
pub struct UrlsArgs {
    #[command(flatten)]
    place: PlaceArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// Prints every workflow with its URL.
pub fn run(args: UrlsArgs) -> anyhow::Result<ExitCode> {
    let catalog = load_dir(
        &args.place.workflows,
        &LoadOptions::process_env(SecretPolicy::Warn),
    );
    let keys = super::store::keys(&args.place)?;
    let registry = Registry::build(&catalog, None, keys.as_ref(), &args.place.public_url())
        .map_err(anyhow::Error::msg)?;
    match args.format {
        Format::Json => {
            let rows: Vec<_> = registry
                .listing
                .iter()
                .map(|w| json!({"id": w.id, "title": w.title, "mode": w.mode, "enabled": w.enabled, "url": w.url}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        Format::Table => {
            println!("{:<28} {:<6} {:<8} URL", "ID", "MODE", "ENABLED");
            for w in &registry.listing {
                let mode = serde_json::to_value(w.mode)?;
                println!(
                    "{:<28} {:<6} {:<8} {}",
                    w.id,
                    mode.as_str().unwrap_or(""),
                    w.enabled,
                    w.url
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
