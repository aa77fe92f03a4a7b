//! Paths of the components levelhost's tests run, built from source by `build.rs`.

include!(concat!(env!("OUT_DIR"), "/gen.rs"));
