//! `TOKENGATE_<SECTION>__<KEY>` environment overrides, applied to the parsed TOML table before
//! it is read into the file's shape (so an override is checked exactly like the file).
//!
//! Hand-written rather than figment: the semantics are ours to keep exact (only names with `__`
//! are overrides, so `TOKENGATE_CONFIG` and `TOKENGATE_LOG` are not; a value is TOML when it
//! parses as TOML, else a string; errors name the variable), the file is read alone first so its
//! errors keep their line numbers, and the whole of it is one 40-line function.

use super::ConfigError;

/// Whether the environment variable `name` is a config override.
pub(super) fn is_override(name: &str) -> bool {
    // Only TOKENGATE_<SECTION>__<KEY> names are overrides; other TOKENGATE_* variables
    // (TOKENGATE_CONFIG, TOKENGATE_LOG, tooling) are none of the config's business.
    name.starts_with("TOKENGATE_") && name.contains("__")
}

/// Sets `TOKENGATE_A__B__C=value` at `a.b.c` in `table`.
pub(super) fn apply_override(
    table: &mut toml::Table,
    name: &str,
    value: &str,
) -> Result<(), ConfigError> {
    let path: Vec<String> = name["TOKENGATE_".len()..]
        .split("__")
        .map(|p| p.to_ascii_lowercase())
        .collect();
    if path.len() < 2 || path.iter().any(|p| p.is_empty()) {
        return Err(ConfigError::new(format!(
            "environment variable {name}: expected TOKENGATE_<SECTION>__<KEY>"
        )));
    }
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let (last, sections) = path.split_last().expect("len >= 2");
    let mut cursor = table;
    for section in sections {
        let entry = cursor
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cursor = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(ConfigError::new(format!(
                    "environment variable {name}: `{section}` is not a table"
                )))
            }
        };
    }
    cursor.insert(last.clone(), parsed);
    Ok(())
}
