//! `inferwatch report`: one self-contained HTML file from the tables.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use inferwatch_schemas::time::parse_duration;

use crate::report::{self, Scope};

#[derive(clap::Args)]
pub struct ReportArgs {
    /// Where the Parquet tables are: a directory or s3://bucket/prefix.
    #[arg(long, value_name = "DIR", default_value = "./inferwatch-data")]
    data_dir: PathBuf,
    /// The HTML file to write.
    #[arg(long, value_name = "FILE", default_value = "report.html")]
    out: PathBuf,
    /// Only windows starting this long before the newest window's end, e.g. 24h.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    since: Option<Duration>,
    /// Only this service.
    #[arg(long, value_name = "NAME")]
    service: Option<String>,
}

impl ReportArgs {
    pub fn run(self) -> Result<()> {
        let rt = super::tokio_runtime()?;
        let options = inferwatch_sink::StoreOptions::default();
        let store = inferwatch_runtime::config::open_store_to_read(&self.data_dir, &options)?;
        let scope = Scope {
            since: self.since,
            service: self.service.clone(),
        };
        match report::write(&rt, &store, &scope, &self.out)? {
            Some(keys) => {
                eprintln!(
                    "wrote {} ({keys} service/model pairs); open it in a browser",
                    self.out.display()
                );
                Ok(())
            }
            None => match &self.service {
                Some(s) => bail!(
                    "no metrics windows for service {s:?} under {}: check the name (SELECT DISTINCT service FROM metrics)",
                    store.display()
                ),
                None => bail!(
                    "no metrics windows under {}: run `inferwatch demo` or `inferwatch run` first, or pass --data-dir",
                    store.display()
                ),
            },
        }
    }
}
