//! The wasmtime engine levelhost runs every plugin in, and loading
//! components into it.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use sha2::{Digest, Sha256};
use std::path::Path;
use wasmtime::component::{Component, Linker};

use wasmtime::{Cache, CacheConfig, Config, Engine};

use crate::bindings::PluginPre;
use crate::error::HostError;
use crate::runtime::HostState;

/// How often the engine's epoch advances. Run deadlines are counted in
/// these ticks, so a plugin overruns its time limit by at most one tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Largest wasm stack a plugin may use; deep recursion traps instead of
/// exhausting the host's stack.
pub const MAX_WASM_STACK: usize = 1024 * 1024;

/// Builds the engine: component model, async host calls, epoch interruption.
/// A background thread advances the epoch until the engine is dropped.
///
/// With `cache_dir`, compiled components are kept on disk (wasmtime's cache,
/// keyed by the component's bytes and the engine's settings), so the next
/// load of the same component skips compilation. Only this host writes there.
pub fn new_engine(cache_dir: Option<&Path>) -> Result<Engine, HostError> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK);
    if let Some(dir) = cache_dir {
        prepare_cache_dir(dir)?;
        let mut cache = CacheConfig::new();
        cache.with_directory(dir);
        let cache = Cache::new(cache).map_err(|e| {
            HostError::Engine(format!(
                "cannot use the compile cache in {}: {e}",
                dir.display()
            ))
        })?;
        config.cache(Some(cache));
    }
    let engine = Engine::new(&config).map_err(|e| HostError::Engine(e.to_string()))?;
    let weak = engine.weak();
    thread::Builder::new()
        .name("levelhost-epoch".to_owned())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                thread::sleep(EPOCH_TICK);
            }
        })
        .map_err(|e| HostError::Engine(format!("cannot start the epoch thread: {e}")))?;
    Ok(engine)
}

/// Creates the compile cache directory owner-only, and refuses one that
/// other users may write: compiled code is loaded from it without being
/// compiled again, so only this host may put anything there.
fn prepare_cache_dir(dir: &Path) -> Result<(), HostError> {
    let error = |message: String| {
        HostError::Engine(format!(
            "cannot use the compile cache in {}: {message}",
            dir.display()
        ))
    };
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            builder.mode(0o700);
        }
        builder.create(dir).map_err(|e| error(e.to_string()))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir)
            .map_err(|e| error(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o022 != 0 {
            return Err(error(format!(
                "other users may write to it (mode {:o}); make it owner-only (chmod 700)",
                mode & 0o777
            )));
        }
    }
    Ok(())
}

/// A component compiled and checked against the plugin world, ready to
/// instantiate any number of times.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// The plugin's name (from its manifest, else its file name).
    pub name: String,
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
    /// The interfaces it imports, such as `level:api/tags@0.1.0`.
    pub imports: Vec<String>,
    pub(crate) pre: Arc<PluginPre<HostState>>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// The sha256 digest of some bytes as `sha256:<hex>`.
pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in hash {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Compiles `bytes` and links it against `linker`. A component that imports
/// something the host does not provide, or lacks the `handler` export, is
/// refused here, before it runs.
pub fn load(
    engine: &Engine,
    linker: &Linker<HostState>,
    name: &str,
    bytes: &[u8],
) -> Result<LoadedPlugin, HostError> {
    let component = Component::new(engine, bytes).map_err(|e| HostError::InvalidComponent {
        name: name.to_owned(),
        message: format!("{e:#}"),
    })?;
    let mismatch = |e: wasmtime::Error| HostError::WorldMismatch {
        name: name.to_owned(),
        message: format!("{e:#}"),
    };
    let imports = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let instance_pre = linker.instantiate_pre(&component).map_err(mismatch)?;
    let pre = PluginPre::new(instance_pre).map_err(mismatch)?;
    Ok(LoadedPlugin {
        name: name.to_owned(),
        digest: digest(bytes),
        imports,
        pre: Arc::new(pre),
    })
}
