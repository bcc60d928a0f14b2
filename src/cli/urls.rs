//! `hookflow urls`: the keys the server uses, readable while it runs.

use super::PlaceArgs;
use clap::ValueEnum;
use hookflow_model::{load_dir, Diagnostic, LoadOptions, SecretPolicy};
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

/// Prints every workflow that loads with its URL. A file with errors is
/// left out, its errors on stderr (as `validate` prints them); exit 1 then,
/// or when the folder cannot be read.
pub fn run(args: UrlsArgs) -> anyhow::Result<ExitCode> {
    let catalog = load_dir(
        &args.place.workflows,
        &LoadOptions::process_env(SecretPolicy::Warn),
    );
    let errors: Vec<&Diagnostic> = catalog.diagnostics().filter(|d| d.is_error()).collect();
    for d in &errors {
        eprintln!("{}", super::validate::text_line(d));
    }
    if catalog.files.is_empty() && !errors.is_empty() {
        // Nothing to list: the store is not opened (nor a data folder made).
        return Ok(ExitCode::from(1));
    }
    let keys = super::store::keys(&args.place)?;
    let mut registry = Registry::build(&catalog, None, keys.as_ref(), &args.place.public_url())
        .map_err(anyhow::Error::msg)?;
    let broken: Vec<&str> = registry
        .listing
        .iter()
        .filter(|w| !w.loaded)
        .map(|w| w.id.as_str())
        .collect();
    if !broken.is_empty() {
        eprintln!(
            "not listed (their files have errors; `hookflow validate` shows them): {}",
            broken.join(", ")
        );
    }
    registry.listing.retain(|w| w.loaded);
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
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
