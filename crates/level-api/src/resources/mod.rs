//! Level's operations, one file per resource (as the simulator's `tenant/`):
//! each an `impl LevelClient` block on the request helpers of the crate root.

use super::*;

mod alerts;
mod automations;
mod custom_field_values;
mod custom_fields;
mod devices;
mod groups;
mod tags;
