//! `inferwatch report`: the tables as one self-contained HTML page with pictures —
//! reliability diagrams, metrics over time, the alert timeline, dead letters — for people
//! who would rather look than read. `data` reads, `svg` draws, `html` lays out.

mod data;
mod html;
mod svg;

use std::path::Path;

use anyhow::{Context, Result};
use inferwatch_sink::Store;

pub use data::Scope;

/// Writes the report of `store` to `out`; returns the service/model pairs it shows, or
/// `None` when the scope holds no window.
pub fn write(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    scope: &Scope,
    out: &Path,
) -> Result<Option<usize>> {
    let Some(d) = data::read(rt, store, scope)? else {
        return Ok(None);
    };
    let generated = inferwatch_schemas::time::format_rfc3339_ms(inferwatch_schemas::time::now_ms());
    let page = html::page(&d, &store.display().to_string(), &generated);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(out, page).with_context(|| format!("writing {}", out.display()))?;
    Ok(Some(d.keys.len()))
}
