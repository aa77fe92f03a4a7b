//! Plugin packages: a component and its `plugin.toml` (and a README),
//! identified by one digest over both, with reviewers' signatures beside them.
//!
//! On disk a package is a plain directory, so it can live in git:
//!
//! ```text
//! stale-device-tagger-0.1.0/
//!   plugin.wasm            the component
//!   plugin.toml            its manifest
//!   README.md              optional, not covered by the digest
//!   signatures/KEYID.sig   one file per reviewer (see `trust`)
//! ```
//!
//! The package digest is `sha256` over a fixed header and the sha256 of the
//! component and of the manifest, so flipping any byte of either changes it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::trust::Signature;
use levelhost_core::capability::{Capability, CapabilitySet, Resource, resource_of_interface};
use levelhost_core::digest;
use levelhost_core::location::FileError;
use levelhost_core::manifest::PluginManifest;

/// The component's file name in a package.
pub const COMPONENT_FILE: &str = "plugin.wasm";
/// The manifest's file name in a package.
pub const MANIFEST_FILE: &str = "plugin.toml";
/// The README's file name in a package.
pub const README_FILE: &str = "README.md";
/// The directory of signature files in a package.
pub const SIGNATURES_DIR: &str = "signatures";

/// Why a package could not be read, made or written.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The manifest is not valid.
    #[error(transparent)]
    Manifest(#[from] FileError),
    /// Something in the package is wrong; the message says what and where.
    #[error("{path}: {message}")]
    Invalid {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// A package read into memory.
#[derive(Debug, Clone)]
pub struct Package {
    /// Where it was read from (empty for a package made in memory).
    pub dir: PathBuf,
    /// The component's bytes.
    pub component: Vec<u8>,
    /// The manifest's text, exactly as signed.
    pub manifest_text: String,
    /// The checked manifest.
    pub manifest: PluginManifest,
    /// The README, if there is one.
    pub readme: Option<String>,
    /// Reviewers' signatures, each with the file it came from.
    pub signatures: Vec<(PathBuf, Signature)>,
    /// `sha256:<hex>` over the component and the manifest.
    pub digest: String,
}

/// The digest of a package with this component and manifest.
pub fn package_digest(component: &[u8], manifest: &[u8]) -> String {
    let text = format!(
        "levelhost-package-v1\n{COMPONENT_FILE} {}\n{MANIFEST_FILE} {}\n",
        digest(component),
        digest(manifest)
    );
    digest(text.as_bytes())
}

fn read(path: &Path) -> Result<Vec<u8>, PackageError> {
    std::fs::read(path).map_err(|source| PackageError::Read {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), PackageError> {
    std::fs::write(path, bytes).map_err(write_error(path))
}

/// Turns an I/O error on `path` while writing into a [`PackageError`].
fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> PackageError + '_ {
    move |source| PackageError::Write {
        path: path.to_owned(),
        source,
    }
}

impl Package {
    /// Makes a package from its parts; the manifest is checked, signatures start empty.
    pub fn from_parts(
        component: Vec<u8>,
        manifest_text: String,
        readme: Option<String>,
        manifest_path: &Path,
    ) -> Result<Self, PackageError> {
        let manifest = PluginManifest::parse(manifest_path, &manifest_text)?;
        if !component.starts_with(b"\0asm") {
            return Err(PackageError::Invalid {
                path: manifest_path.with_file_name(COMPONENT_FILE),
                message: "not a WebAssembly file".to_owned(),
            });
        }
        let digest = package_digest(&component, manifest_text.as_bytes());
        Ok(Self {
            dir: PathBuf::new(),
            component,
            manifest_text,
            manifest,
            readme,
            signatures: Vec::new(),
            digest,
        })
    }

    /// Reads a package directory: component, manifest, README and signatures.
    pub fn open(dir: &Path) -> Result<Self, PackageError> {
        if !dir.is_dir() {
            return Err(PackageError::Invalid {
                path: dir.to_owned(),
                message: format!(
                    "not a package directory (expected {COMPONENT_FILE} and {MANIFEST_FILE} in it)"
                ),
            });
        }
        let component = read(&dir.join(COMPONENT_FILE))?;
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest_text =
            String::from_utf8(read(&manifest_path)?).map_err(|_| PackageError::Invalid {
                path: manifest_path.clone(),
                message: "the manifest is not UTF-8".to_owned(),
            })?;
        let readme_path = dir.join(README_FILE);
        let readme = if readme_path.exists() {
            Some(String::from_utf8_lossy(&read(&readme_path)?).into_owned())
        } else {
            None
        };
        let mut package = Self::from_parts(component, manifest_text, readme, &manifest_path)?;
        package.dir = dir.to_owned();
        package.signatures = read_signatures(&dir.join(SIGNATURES_DIR))?;
        Ok(package)
    }

    /// The name of the directory this package is written to by default: `NAME-VERSION`.
    pub fn default_dir_name(&self) -> String {
        format!("{}-{}", self.manifest.name, self.manifest.version)
    }

    /// Writes the package to `dir`, replacing what is there. It is written
    /// beside `dir` first and moved into place, so a failure leaves either
    /// the old directory or the new one, never half of it.
    pub fn write(&self, dir: &Path) -> Result<(), PackageError> {
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(write_error(parent))?;
        let file_name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "package".to_owned());
        let staging = parent.join(format!(
            ".{file_name}.partial-{:016x}",
            rand::random::<u64>()
        ));
        let result = self.write_files(&staging).and_then(|()| {
            let old = parent.join(format!(".{file_name}.old-{:016x}", rand::random::<u64>()));
            let had_old = dir.exists();
            if had_old {
                std::fs::rename(dir, &old).map_err(write_error(dir))?;
            }
            std::fs::rename(&staging, dir).map_err(write_error(dir))?;
            if had_old {
                let _ = std::fs::remove_dir_all(&old);
            }
            Ok(())
        });
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result
    }

    fn write_files(&self, dir: &Path) -> Result<(), PackageError> {
        let sigs = dir.join(SIGNATURES_DIR);
        std::fs::create_dir_all(&sigs).map_err(write_error(&sigs))?;
        write(&dir.join(COMPONENT_FILE), &self.component)?;
        write(&dir.join(MANIFEST_FILE), self.manifest_text.as_bytes())?;
        if let Some(readme) = &self.readme {
            write(&dir.join(README_FILE), readme.as_bytes())?;
        }
        for (_, signature) in &self.signatures {
            write(
                &sigs.join(signature.file_name()),
                signature.to_json().as_bytes(),
            )?;
        }
        Ok(())
    }

    /// Adds a signature to the package directory it was read from, touching
    /// nothing else there: `signatures/KEYID.sig`, written whole or not at all.
    pub fn sign_in_place(&mut self, signature: Signature) -> Result<PathBuf, PackageError> {
        let dir = self.dir.join(SIGNATURES_DIR);
        std::fs::create_dir_all(&dir).map_err(write_error(&dir))?;
        let path = dir.join(signature.file_name());
        let staging = dir.join(format!(".{}.partial", signature.file_name()));
        write(&staging, signature.to_json().as_bytes())?;
        if let Err(source) = std::fs::rename(&staging, &path) {
            let _ = std::fs::remove_file(&staging);
            return Err(write_error(&path)(source));
        }
        self.add_signature(signature);
        Ok(path)
    }

    /// Adds a signature, replacing an earlier one by the same key.
    pub fn add_signature(&mut self, signature: Signature) {
        self.signatures.retain(|(_, s)| s.key != signature.key);
        let path = self.dir.join(SIGNATURES_DIR).join(signature.file_name());
        self.signatures.push((path, signature));
    }

    /// The `level:api` interfaces (and others) the component imports, read
    /// from its binary without compiling it.
    pub fn imports(&self) -> Result<Vec<String>, PackageError> {
        component_imports(&self.component).map_err(|message| PackageError::Invalid {
            path: self.dir.join(COMPONENT_FILE),
            message,
        })
    }

    /// Compares the component's imports with the manifest's capabilities, in
    /// warnings: an import no requested capability covers (its calls will
    /// answer `denied`), and a requested capability the component cannot use.
    pub fn check_capabilities(&self) -> Result<Vec<String>, PackageError> {
        let imported: BTreeSet<Resource> = self
            .imports()?
            .iter()
            .filter_map(|i| resource_of_interface(i))
            .collect();
        let requested = &self.manifest.capabilities;
        let mut warnings: Vec<String> = imported
            .iter()
            .filter(|resource| !requested.iter().any(|c| c.resource == **resource))
            .map(|resource| {
                format!(
                    "the component imports {} but the manifest asks for no {}:* capability, so its calls there will answer denied; add the ones it needs to capabilities, or build it with `levelhost build` to import only what the manifest asks for",
                    levelhost_core::capability::interface_of(*resource),
                    resource.name()
                )
            })
            .collect();
        warnings.extend(unused_capabilities(requested, &imported).map(|c| {
            format!(
                "{c} is requested but the component does not import {}, so it cannot use it",
                levelhost_core::capability::interface_of(c.resource)
            )
        }));
        Ok(warnings)
    }
}

fn unused_capabilities<'a>(
    requested: &'a CapabilitySet,
    imported: &'a BTreeSet<Resource>,
) -> impl Iterator<Item = &'static Capability> + 'a {
    requested
        .iter()
        .filter(move |c| !imported.contains(&c.resource))
}

fn read_signatures(dir: &Path) -> Result<Vec<(PathBuf, Signature)>, PackageError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => {
            return Err(PackageError::Read {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sig"))
        .collect();
    paths.sort();
    for path in paths {
        let text = String::from_utf8(read(&path)?).map_err(|_| PackageError::Invalid {
            path: path.clone(),
            message: "the signature file is not UTF-8".to_owned(),
        })?;
        let signature = Signature::from_json(&text).map_err(|e| PackageError::Invalid {
            path: path.clone(),
            message: e.to_string(),
        })?;
        out.push((path, signature));
    }
    Ok(out)
}

/// The names a component imports at its top level, such as `level:api/tags@0.1.0`.
pub fn component_imports(bytes: &[u8]) -> Result<Vec<String>, String> {
    use wasmparser::{Parser, Payload};
    let mut imports = Vec::new();
    let mut depth = 0usize;
    let mut is_component = false;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| format!("not a valid WebAssembly component: {e}"))?;
        match payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 {
                    is_component = encoding == wasmparser::Encoding::Component;
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import =
                        import.map_err(|e| format!("not a valid WebAssembly component: {e}"))?;
                    imports.push(import.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    if !is_component {
        return Err(
            "a core WebAssembly module, not a component (build for wasm32-wasip2 or componentize it)"
                .to_owned(),
        );
    }
    Ok(imports)
}

/// What changed between two versions of a package, one line per change,
/// such as `capabilities + devices:delete`. Empty when they are the same package.
pub fn diff(old: &Package, new: &Package) -> Result<Vec<String>, PackageError> {
    Ok(PackageDiff::of(old, new)?.lines())
}

/// What changed between two packages, field by field (`[old, new]` pairs;
/// `levelhost plugin diff --json` prints it).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PackageDiff {
    /// The plugin's name, if it changed.
    pub name: Option<(String, String)>,
    /// The version, if it changed.
    pub version: Option<(String, String)>,
    /// The package digest, if it changed.
    pub digest: Option<(String, String)>,
    /// Capabilities the new manifest asks for and the old did not.
    pub capabilities_added: Vec<String>,
    /// Capabilities the old manifest asked for and the new does not.
    pub capabilities_removed: Vec<String>,
    /// WIT interfaces the new component imports and the old did not.
    pub imports_added: Vec<String>,
    /// WIT interfaces the old component imported and the new does not.
    pub imports_removed: Vec<String>,
    /// Whether the input schema changed.
    pub input_schema_changed: bool,
    /// The component's digest, if it changed.
    pub component: Option<(String, String)>,
}

impl PackageDiff {
    /// Compares two packages.
    pub fn of(old: &Package, new: &Package) -> Result<Self, PackageError> {
        let (a, b) = (&old.manifest, &new.manifest);
        let changed = |x: &str, y: &str| (x != y).then(|| (x.to_owned(), y.to_owned()));
        let old_imports: BTreeSet<String> = old.imports()?.into_iter().collect();
        let new_imports: BTreeSet<String> = new.imports()?.into_iter().collect();
        Ok(Self {
            name: changed(&a.name, &b.name),
            version: changed(&a.version, &b.version),
            digest: changed(&old.digest, &new.digest),
            capabilities_added: b
                .capabilities
                .difference(&a.capabilities)
                .map(ToString::to_string)
                .collect(),
            capabilities_removed: a
                .capabilities
                .difference(&b.capabilities)
                .map(ToString::to_string)
                .collect(),
            imports_added: new_imports.difference(&old_imports).cloned().collect(),
            imports_removed: old_imports.difference(&new_imports).cloned().collect(),
            input_schema_changed: a.input_schema != b.input_schema,
            component: changed(&digest(&old.component), &digest(&new.component)),
        })
    }

    /// The changes, one line each (`capabilities + tags:write`); none: the same package.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (field, pair) in [
            ("name", &self.name),
            ("version", &self.version),
            ("digest", &self.digest),
        ] {
            if let Some((old, new)) = pair {
                lines.push(format!("{field} {old} -> {new}"));
            }
        }
        for (what, sign, items) in [
            ("capabilities", '+', &self.capabilities_added),
            ("capabilities", '-', &self.capabilities_removed),
            ("imports", '+', &self.imports_added),
            ("imports", '-', &self.imports_removed),
        ] {
            lines.extend(items.iter().map(|i| format!("{what} {sign} {i}")));
        }
        if self.input_schema_changed {
            lines.push("input schema changed".to_owned());
        }
        if let Some((old, new)) = &self.component {
            lines.push(format!("component {old} -> {new}"));
        }
        lines
    }
}
