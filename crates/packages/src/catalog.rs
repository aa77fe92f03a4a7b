//! A catalog: a plain directory of packages that teams share, in git or
//! on a file share. Each version of each plugin is a package directory at
//! `NAME/VERSION/`; versions are immutable once added, but reviewers may
//! add signatures to them (`levelhost plugin sign CATALOG/NAME/VERSION`).

use std::path::{Path, PathBuf};

use crate::package::{Package, PackageError};

/// A catalog directory.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Its root.
    pub dir: PathBuf,
}

/// One package in a catalog.
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    /// The package as read.
    pub package: Package,
}

/// Every package in a catalog, and the directories that are not packages.
#[derive(Debug, Default)]
pub struct Listing {
    /// The packages, by name and then version (oldest first).
    pub entries: Vec<CatalogEntry>,
    /// Directories that could not be read as packages, and why; the rest of the catalog still works.
    pub broken: Vec<PackageError>,
}

/// Why a catalog operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A package in it could not be read or written.
    #[error(transparent)]
    Package(#[from] PackageError),
    /// The catalog directory could not be read.
    #[error("cannot read the catalog {path}")]
    Read {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A version is already there with other contents.
    #[error(
        "{name} {version} is already in the catalog as {existing}, and versions do not change; give the new build a new version"
    )]
    VersionExists {
        /// The plugin.
        name: String,
        /// The version.
        version: String,
        /// The digest in the catalog.
        existing: String,
    },
    /// Nothing matches.
    #[error("{0}")]
    NotFound(String),
}

/// Orders `MAJOR.MINOR.PATCH` versions numerically.
fn version_key(version: &str) -> Vec<u64> {
    version.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

impl Catalog {
    /// The catalog at `dir` (created on the first add).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn package_dir(&self, name: &str, version: &str) -> PathBuf {
        self.dir.join(name).join(version)
    }

    /// Adds a package. Adding the same package again merges its signatures;
    /// adding other contents under an existing version is refused.
    pub fn add(&self, package: &Package) -> Result<PathBuf, CatalogError> {
        let (name, version) = (&package.manifest.name, &package.manifest.version);
        let dir = self.package_dir(name, version);
        let mut merged = package.clone();
        if dir.exists() {
            let existing = Package::open(&dir)?;
            if existing.digest != package.digest {
                return Err(CatalogError::VersionExists {
                    name: name.clone(),
                    version: version.clone(),
                    existing: existing.digest,
                });
            }
            for (_, signature) in existing.signatures {
                if !merged
                    .signatures
                    .iter()
                    .any(|(_, s)| s.key == signature.key)
                {
                    merged.add_signature(signature);
                }
            }
        }
        merged.write(&dir)?;
        Ok(dir)
    }

    /// Every package, by name and then version (oldest first).
    pub fn list(&self) -> Result<Listing, CatalogError> {
        let mut listing = Listing::default();
        if !self.dir.exists() {
            return Ok(listing);
        }
        for name_dir in sorted_dirs(&self.dir)? {
            let mut versions = sorted_dirs(&name_dir)?;
            versions
                .sort_by_key(|v| version_key(&v.file_name().unwrap_or_default().to_string_lossy()));
            for version_dir in versions {
                match Package::open(&version_dir) {
                    Ok(package) => listing.entries.push(CatalogEntry { package }),
                    Err(e) => listing.broken.push(e),
                }
            }
        }
        Ok(listing)
    }

    /// Packages whose name or description contains `term` (any case).
    pub fn search(&self, term: &str) -> Result<Vec<CatalogEntry>, CatalogError> {
        let term = term.to_lowercase();
        Ok(self
            .list()?
            .entries
            .into_iter()
            .filter(|e| {
                let m = &e.package.manifest;
                m.name.to_lowercase().contains(&term)
                    || m.description.to_lowercase().contains(&term)
            })
            .collect())
    }

    /// `NAME` (the newest version) or `NAME@VERSION`.
    pub fn find(&self, spec: &str) -> Result<Package, CatalogError> {
        let (name, version) = match spec.split_once('@') {
            Some((n, v)) => (n, Some(v)),
            None => (spec, None),
        };
        let mut matches: Vec<Package> = self
            .list()?
            .entries
            .into_iter()
            .map(|e| e.package)
            .filter(|p| p.manifest.name == name && version.is_none_or(|v| p.manifest.version == v))
            .collect();
        matches.pop().ok_or_else(|| {
            CatalogError::NotFound(format!(
                "{spec} is not in the catalog {}",
                self.dir.display()
            ))
        })
    }
}

fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>, CatalogError> {
    let read = std::fs::read_dir(dir).map_err(|source| CatalogError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut dirs: Vec<PathBuf> = read
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    dirs.sort();
    Ok(dirs)
}
