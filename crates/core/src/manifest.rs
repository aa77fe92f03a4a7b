//! `plugin.toml`: what a plugin is and what it asks for.
//!
//! ```toml
//! name = "stale-device-tagger"
//! version = "0.1.0"
//! description = "Tags devices offline longer than N days."
//! capabilities = ["devices:read", "tags:read", "tags:write"]
//!
//! # The routes it needs on the other systems it calls, by connection name:
//! # what the operator grants in levelhost.toml, and exactly what `levelhost
//! # test` runs it under.
//! [connections.ticketing]
//! routes = ["POST /api/Tickets", "POST /api/Tickets/*/close"]
//!
//! # A JSON Schema for the run's input.
//! [input]
//! type = "object"
//! additionalProperties = false
//! properties.days = { type = "integer", minimum = 1 }
//! ```

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::capability::{Capability, CapabilitySet};
use crate::location::{FileError, Source};

/// A plugin manifest as written. Unknown fields are errors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    /// The plugin's name: lower-case letters, digits and dashes.
    pub name: Spanned<String>,
    /// Its version, `MAJOR.MINOR.PATCH`.
    pub version: Spanned<String>,
    /// One line on what it does.
    #[serde(default)]
    pub description: String,
    /// The capabilities it asks for, such as `devices:read`.
    #[serde(default)]
    pub capabilities: Vec<Spanned<String>>,
    /// A JSON Schema its input must satisfy.
    #[serde(default)]
    pub input: Option<Spanned<toml::Table>>,
    /// The routes it needs on each connection it calls.
    #[serde(default)]
    pub connections: std::collections::BTreeMap<String, crate::route::ConnectionGrant>,
}

/// A checked manifest.
#[derive(Debug, Clone)]
pub struct PluginManifest {
    /// The plugin's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// What it does.
    pub description: String,
    /// What it asks for.
    pub capabilities: CapabilitySet,
    /// The input schema, as JSON.
    pub input_schema: Option<serde_json::Value>,
    /// The routes it needs on each connection it calls, by connection name.
    pub connections: crate::route::Connections,
}

impl PluginManifest {
    /// Reads and checks a manifest file; the error names the file, line and problem.
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let source = Source::read(path)?;
        let raw: RawManifest = source.parse()?;
        Self::check(&source, raw)
    }

    /// Parses and checks a manifest's text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, FileError> {
        let source = Source {
            path: path.to_owned(),
            text: text.to_owned(),
        };
        let raw: RawManifest = source.parse()?;
        Self::check(&source, raw)
    }

    fn check(source: &Source, raw: RawManifest) -> Result<Self, FileError> {
        let name = raw.name.get_ref();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(source.error(
                Some(raw.name.span()),
                format!("name {name:?} must be lower-case letters, digits and dashes"),
            ));
        }
        let version = raw.version.get_ref();
        let parts: Vec<&str> = version.split('.').collect();
        if parts.len() != 3
            || parts
                .iter()
                .any(|p| p.is_empty() || p.parse::<u64>().is_err())
        {
            return Err(source.error(
                Some(raw.version.span()),
                format!("version {version:?} must be MAJOR.MINOR.PATCH, such as 0.1.0"),
            ));
        }
        let mut capabilities = CapabilitySet::new();
        for cap in &raw.capabilities {
            let parsed: Capability =
                cap.get_ref()
                    .parse()
                    .map_err(|e: crate::capability::UnknownCapability| {
                        source.error(Some(cap.span()), e.to_string())
                    })?;
            capabilities.insert(parsed);
        }
        let input_schema = match raw.input {
            None => None,
            Some(table) => {
                let at = Some(table.span());
                let schema = serde_json::to_value(table.get_ref()).map_err(|e| {
                    source.error(at.clone(), format!("[input] is not a valid schema: {e}"))
                })?;
                jsonschema::validator_for(&schema).map_err(|e| {
                    let path = e.instance_path().to_string();
                    let place = if path.is_empty() {
                        String::new()
                    } else {
                        format!(" at {path}")
                    };
                    source.error(
                        at,
                        format!("[input] is not a valid JSON Schema{place}: {e}"),
                    )
                })?;
                Some(schema)
            }
        };
        Ok(Self {
            name: name.clone(),
            version: version.clone(),
            description: raw.description,
            capabilities,
            input_schema,
            connections: raw.connections,
        })
    }

    /// What the plugin asks for, in one line: its capabilities, then the
    /// routes on each connection (`nothing ...` when it asks for neither).
    pub fn asks(&self) -> String {
        let mut asks = Vec::new();
        if !self.capabilities.is_empty() {
            asks.push(crate::capability::join(&self.capabilities));
        }
        for (name, grant) in &self.connections {
            let routes: Vec<String> = grant.routes.iter().map(ToString::to_string).collect();
            asks.push(format!("on connection {name}: {}", routes.join(", ")));
        }
        if asks.is_empty() {
            asks.push("nothing (no capability, no connection)".to_owned());
        }
        asks.join("; ")
    }

    /// Checks a run's input against the manifest's schema.
    pub fn check_input(&self, input: &serde_json::Value) -> Result<(), InputRejected> {
        let Some(schema) = &self.input_schema else {
            return Ok(());
        };
        let validator = jsonschema::validator_for(schema).map_err(|e| InputRejected {
            problems: vec![format!("the manifest's input schema cannot be used: {e}")],
        })?;
        let problems: Vec<String> = validator
            .iter_errors(input)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(InputRejected { problems })
        }
    }
}

/// A run's input that the manifest's schema refuses: each problem, with
/// where in the input it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", problems.join("; "))]
pub struct InputRejected {
    /// Each problem, such as `/days: "x" is not of type "integer"`.
    pub problems: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13, point 8: a schema error names the manifest's line and the place in the schema.
    #[test]
    fn a_bad_input_schema_is_refused_at_its_line() {
        let text = "name = \"x\"\nversion = \"0.1.0\"\n\n[input]\ntype = \"objekt\"\n";
        let err = PluginManifest::parse(Path::new("plugin.toml"), text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("plugin.toml:4:1: [input] is not a valid JSON Schema at /type"),
            "{err}"
        );
    }
}
