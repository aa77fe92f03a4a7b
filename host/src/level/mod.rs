//! Host side of the `level:api` interfaces.
pub use error::LevelError;
mod error;
