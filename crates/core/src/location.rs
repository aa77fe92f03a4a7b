//! Where in a file something is: turns byte spans from the TOML parser into
//! `file:line:column`, so every configuration error points at its place.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// An error at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FileError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// A file's text, for turning spans into lines.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file's path.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
}

impl Source {
    /// Reads a file. Text that is not UTF-8 is refused at the line and column of its first bad byte.
    pub fn read(path: &Path) -> Result<Self, FileError> {
        let bytes = std::fs::read(path).map_err(|e| FileError {
            file: path.to_owned(),
            line: None,
            column: None,
            message: format!("cannot read the file: {e}"),
        })?;
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Self {
                path: path.to_owned(),
                text,
            }),
            Err(e) => {
                let good = e.utf8_error().valid_up_to();
                let bytes = e.as_bytes();
                let before = String::from_utf8_lossy(bytes.get(..good).unwrap_or_default());
                let source = Self {
                    path: path.to_owned(),
                    text: before.into_owned(),
                };
                let end = source.text.len();
                Err(source.error(Some(end..end), "the file is not UTF-8 text"))
            }
        }
    }

    /// Where `span` is, as `file:line:column`: for values read later (a key
    /// file, a component) whose errors must still point at their line.
    pub fn place(&self, span: Range<usize>) -> String {
        let at = self.error(Some(span), String::new()).to_string();
        at.trim_end_matches(": ").to_owned()
    }

    /// An error at `span` (or at no particular place).
    pub fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> FileError {
        let (line, column) = match span {
            Some(span) => {
                let before = self.text.get(..span.start).unwrap_or(&self.text);
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        FileError {
            file: self.path.clone(),
            line,
            column,
            message: message.into(),
        }
    }

    /// Parses the text as TOML into `T`, with the parser's error placed in the file.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, FileError> {
        toml::from_str(&self.text).map_err(|e| self.error(e.span(), e.message().trim().to_owned()))
    }

    /// A path written in this file, relative to the file's folder.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(path)
        }
    }
}
