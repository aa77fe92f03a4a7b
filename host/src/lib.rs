//! levelhost
pub mod bindings;
pub mod client;
pub mod level;
pub mod sim;
