//! Write levelhost plugins in Rust.
//!
//! This crate holds the `level:api` bindings (generated once by
//! wit-bindgen), the `export!` macro that makes a type the plugin's
//! handler, and the helpers every plugin needs: reading its JSON input,
//! walking Level's cursor pages, logging, the plugin's state ([`state`]),
//! and requests to the grant's connections ([`http`]).
//!
//! ```ignore
//! use levelhost_sdk::bindings::exports::level::api::handler::{Guest, Invocation, RunError};
//! use levelhost_sdk::bindings::level::api::devices;
//!
//! struct Count;
//!
//! impl Guest for Count {
//!     fn run(invocation: Invocation) -> Result<String, RunError> {
//!         let all = levelhost_sdk::walk(|page| {
//!             devices::list_devices(&devices::DeviceFilter::default(), devices::DeviceInclude::empty(), &page)
//!                 .map(|p| (p.items, p.has_more))
//!         }, |d| d.id.clone())?;
//!         levelhost_sdk::output(&serde_json::json!({ "devices": all.len() }))
//!     }
//! }
//!
//! levelhost_sdk::export!(Count);
//! ```

/// The `level:api` bindings for the `plugin` world.
#[expect(
    missing_docs,
    reason = "generated code; the WIT files document every item"
)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
        pub_export_macro: true,
        default_bindings_module: "levelhost_sdk::bindings",
        generate_all,
    });
}

use bindings::exports::level::api::handler::RunError;
use bindings::level::api::log::{self as wit_log, Level};
use bindings::level::api::types::{Error, PageRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use bindings::export;

pub mod http;

/// The largest page Level serves; walking with it makes the fewest calls.
pub const MAX_PAGE: u32 = 100;

/// Parses the run's input document into `T`. An empty input counts as `{}`.
///
/// A malformed input becomes `RunError::InvalidInput` naming what is wrong.
pub fn input<T: DeserializeOwned>(raw: &str) -> Result<T, RunError> {
    let raw = if raw.trim().is_empty() { "{}" } else { raw };
    serde_json::from_str(raw).map_err(|e| RunError::InvalidInput(e.to_string()))
}

/// Serialises the run's output document.
pub fn output<T: Serialize>(value: &T) -> Result<String, RunError> {
    serde_json::to_string(value).map_err(|e| RunError::Failed(format!("cannot encode output: {e}")))
}

/// Walks every page of a Level list and returns all items.
///
/// `fetch` gets each page request (100 items, after the last item seen)
/// and returns that page's items and whether more follow; `cursor` gives an
/// item's id, which becomes the next `starting-after`.
pub fn walk<T>(
    fetch: impl FnMut(PageRequest) -> Result<(Vec<T>, bool), Error>,
    cursor: impl Fn(&T) -> String,
) -> Result<Vec<T>, Error> {
    items(fetch, cursor).collect()
}

/// An iterator over every item of a Level list, fetching pages as it goes:
/// stop early and no further page is requested.
///
/// ```ignore
/// for device in levelhost_sdk::items(
///     |page| devices::list_devices(&DeviceFilter::default(), DeviceInclude::empty(), &page).map(|p| (p.items, p.has_more)),
///     |d| d.id.clone(),
/// ) {
///     let device = device?;
/// }
/// ```
pub fn items<T, F, C>(fetch: F, cursor: C) -> Items<T, F, C>
where
    F: FnMut(PageRequest) -> Result<(Vec<T>, bool), Error>,
    C: Fn(&T) -> String,
{
    Items {
        fetch,
        cursor,
        buffer: std::collections::VecDeque::new(),
        after: None,
        done: false,
    }
}

/// The iterator [`items`] returns.
pub struct Items<T, F, C> {
    fetch: F,
    cursor: C,
    buffer: std::collections::VecDeque<T>,
    after: Option<String>,
    done: bool,
}

impl<T, F, C> Iterator for Items<T, F, C>
where
    F: FnMut(PageRequest) -> Result<(Vec<T>, bool), Error>,
    C: Fn(&T) -> String,
{
    type Item = Result<T, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.buffer.pop_front() {
                return Some(Ok(item));
            }
            if self.done {
                return None;
            }
            let page = PageRequest {
                limit: Some(MAX_PAGE),
                starting_after: self.after.take(),
                ending_before: None,
            };
            match (self.fetch)(page) {
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Ok((items, more)) => {
                    self.after = items.last().map(&self.cursor);
                    self.done = !more || self.after.is_none();
                    self.buffer.extend(items);
                }
            }
        }
    }
}

impl From<Error> for RunError {
    fn from(err: Error) -> Self {
        RunError::Level(err)
    }
}

/// Logs at `info` with key/value fields.
pub fn info(message: &str, fields: &[(&str, &str)]) {
    log(Level::Info, message, fields);
}

/// Logs at `warn` with key/value fields.
pub fn warn(message: &str, fields: &[(&str, &str)]) {
    log(Level::Warn, message, fields);
}

/// Logs at any level with key/value fields.
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    wit_log::log(level, message, &fields);
}

impl Default for bindings::level::api::devices::DeviceFilter {
    /// No filter: every device.
    fn default() -> Self {
        Self {
            group: None,
            tag_id: None,
            hostname: None,
            serial_number: None,
        }
    }
}

impl Default for bindings::level::api::alerts::AlertFilter {
    /// No filter: every alert.
    fn default() -> Self {
        Self {
            device_id: None,
            status: None,
        }
    }
}

impl Default for bindings::level::api::custom_field_values::ValueFilter {
    /// The organization-level values of every field.
    fn default() -> Self {
        Self {
            assigned_to_id: None,
            custom_field_id: None,
        }
    }
}

impl Default for PageRequest {
    /// The first page at Level's default size.
    fn default() -> Self {
        Self {
            limit: None,
            starting_after: None,
            ending_before: None,
        }
    }
}

/// The plugin's own durable state, with JSON helpers.
///
/// Writes are committed only when the run ends `ok`; a run reads its own
/// writes. Needs `state:read` to read and `state:write` to write.
///
/// ```ignore
/// use levelhost_sdk::state;
///
/// let seen: Option<String> = state::get_json("cursor")?;
/// state::set_json("cursor", &"2025-03-15T14:30:00.000Z")?;
/// let runs = state::increment("runs", 1)?;
/// ```
pub mod state {
    pub use crate::bindings::level::api::state::{
        Entry, EntryPage, compare_and_swap, delete, get, increment, list_entries, set,
    };
    use crate::bindings::level::api::types::Error;
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// A key's value, read as JSON; none when the key has no value.
    /// A value that is not the JSON of `T` is `invalid-input`.
    pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, Error> {
        match get(key)? {
            None => Ok(None),
            Some(entry) => serde_json::from_slice(&entry.value).map(Some).map_err(|e| {
                Error::InvalidInput(format!("state key {key:?} is not the JSON expected: {e}"))
            }),
        }
    }

    /// Sets a key to `value` as JSON; returns its new version.
    pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<u64, Error> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| Error::InvalidInput(format!("cannot encode state key {key:?}: {e}")))?;
        set(key, &bytes)
    }

    /// Every entry whose key starts with `prefix`, walking the pages.
    pub fn entries(prefix: &str) -> Result<Vec<Entry>, Error> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = list_entries(prefix, after.as_deref(), Some(100))?;
            all.extend(page.items);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }
}
