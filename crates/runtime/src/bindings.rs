//! The host bindings for the `level:api` WIT package: the one `bindgen!` in
//! levelhost. Every other module imports the generated types from here.

#![expect(
    missing_docs,
    reason = "generated code; the WIT files document every item"
)]

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "plugin",
    imports: { default: async | trappable },
    exports: { default: async },
    // Every argument type is serializable, so a call's size is measured over
    // all of its arguments (see `level::arg_bytes`).
    additional_derives: [serde::Serialize],
    trappable_error_type: {
        "level:api/types.error" => crate::level::LevelError,
    },
});

pub use exports::level::api::handler;
pub use level::api::{
    alerts, automations, custom_field_values, custom_fields, devices, groups, log, state, tags,
    types,
};
