//! Sharing vetted plugins: a [`package`] is a component and its manifest
//! named by one digest; [`trust`] decides whose signatures admit it; a
//! [`catalog`] is a directory of packages a team reviews in git; [`oci`]
//! moves packages through OCI registries; [`installed`] reads the component
//! of an installed plugin, verified, for the runtime to compile.

pub mod catalog;
pub mod installed;
pub mod oci;
pub mod package;
pub mod trust;
