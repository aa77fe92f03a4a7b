//! The wasmtime engine levelhost runs every plugin in, and loading
//! components into it.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use std::path::Path;
use wasmtime::component::{Component, Linker};

use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
};

use crate::bindings::PluginPre;
use crate::error::HostError;
use crate::runner::HostState;

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
///
/// With `pooling`, instances come from wasmtime's pooling allocator: their
/// memories, tables and instance data are reserved once and reused, reset
/// with copy-on-write memory images, so starting a plugin costs a fraction
/// of mapping fresh memory. `levelhost serve`, which starts plugins over
/// and over, uses it; a one-off `levelhost run` does not need it.
pub fn new_engine(cache_dir: Option<&Path>, pooling: Option<Pooling>) -> Result<Engine, HostError> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .memory_init_cow(true);
    // No supported toolchain (Rust, StarlingMonkey JS/TS, componentize-py,
    // Go, C) emits Wasm GC types or exception handling, and both allocate in
    // wasmtime's GC heap, where wasmtime 48.0.8 has known guest-triggered
    // aborts (GHSA-43j2-gcp4-m22g, GHSA-wvgq-g5hf-6gm6). A component that
    // uses either is refused at load; reference types stay on (LLVM emits them).
    config.wasm_gc(false).wasm_exceptions(false);
    if let Some(pooling) = pooling {
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling.config()));
    }
    if let Some(dir) = cache_dir {
        prepare_cache_dir(dir)?;
        let mut cache = CacheConfig::new();
        cache.with_directory(dir);
        let cache = Cache::new(cache).map_err(|e| {
            HostError::engine(
                format!("cannot use the compile cache in {}", dir.display()),
                e,
            )
        })?;
        config.cache(Some(cache));
    }
    let engine = Engine::new(&config).map_err(|e| HostError::engine("cannot configure it", e))?;
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
        .map_err(|e| HostError::engine("cannot start the epoch thread", e))?;
    Ok(engine)
}

/// Sizes of the instance pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pooling {
    /// Plugin instances that may be alive at once.
    pub instances: u32,
    /// The largest memory any plugin may grow to, in MiB (the largest `memory_mb` of the grants).
    pub max_memory_mb: u64,
}

impl Default for Pooling {
    fn default() -> Self {
        Self {
            instances: 1000,
            max_memory_mb: levelhost_core::grant::Limits::default().memory_mb,
        }
    }
}

impl Pooling {
    /// The pool's settings. Components from JavaScript and Python toolchains
    /// have many core instances and large function tables, so the
    /// per-component and per-table limits are generous; all of it is
    /// reserved address space, touched only when used.
    fn config(self) -> PoolingAllocationConfig {
        let instances = self.instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(4))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(4))
            .total_stacks(instances)
            .max_core_instances_per_component(64)
            .max_memories_per_component(8)
            .max_tables_per_component(32)
            .max_memories_per_module(2)
            .max_tables_per_module(8)
            .table_elements(100_000)
            .max_core_instance_size(4 << 20)
            .max_memory_size(
                usize::try_from(self.max_memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
            );
        pool
    }
}

/// Creates the compile cache directory owner-only, and refuses one that
/// other users may write: compiled code is loaded from it without being
/// compiled again, so only this host may put anything there.
fn prepare_cache_dir(dir: &Path) -> Result<(), HostError> {
    let error = |source: Box<dyn std::error::Error + Send + Sync>| {
        HostError::engine(
            format!("cannot use the compile cache in {}", dir.display()),
            source,
        )
    };
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            builder.mode(0o700);
        }
        builder.create(dir).map_err(|e| error(e.into()))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir)
            .map_err(|e| error(e.into()))?
            .permissions()
            .mode();
        if mode & 0o022 != 0 {
            return Err(error(
                format!(
                    "other users may write to it (mode {:o}); make it owner-only (chmod 700)",
                    mode & 0o777
                )
                .into(),
            ));
        }
    }
    Ok(())
}

/// A component compiled and checked against the plugin world, ready to
/// instantiate any number of times.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// The plugin's name (from its manifest, else its file name). Shared,
    /// as the digest is, by every run's audit records.
    pub name: Arc<str>,
    /// `sha256:<hex>` of the component bytes.
    pub digest: Arc<str>,
    /// The interfaces it imports, such as `level:api/tags@0.1.0`.
    pub imports: Vec<String>,
    pub(crate) pre: Arc<PluginPre<HostState>>,
}

impl LoadedPlugin {
    /// The same component under another plugin's name.
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

pub use levelhost_core::digest;

/// Why `bytes` cannot be a component, told from its first eight bytes (a
/// text file, a core module), in a sentence rather than wasmparser's dump.
fn not_a_component(bytes: &[u8]) -> Option<String> {
    const MAGIC: &[u8] = b"\0asm";
    const COMPONENT_LAYER: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
    if !bytes.starts_with(MAGIC) {
        let start: String = String::from_utf8_lossy(&bytes[..bytes.len().min(16)])
            .chars()
            .map(|c| if c.is_control() { '.' } else { c })
            .collect();
        return Some(if bytes.is_empty() {
            "the file is empty, not a WebAssembly component".to_owned()
        } else {
            format!("not a WebAssembly file: it starts with {start:?}, not the \\0asm header")
        });
    }
    match bytes.get(4..8) {
        Some(version) if version == COMPONENT_LAYER => None,
        Some([1, 0, 0, 0]) => Some(
            "a core WebAssembly module, not a component: build it for wasm32-wasip2, or make it a component (`levelhost build` does)".to_owned(),
        ),
        _ => None,
    }
}

/// The interfaces `component` imports, such as `level:api/tags@0.1.0`.
pub(crate) fn imports(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect()
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
    if let Some(message) = not_a_component(bytes) {
        return Err(HostError::InvalidComponent {
            name: name.to_owned(),
            source: message.into(),
        });
    }
    let component = Component::new(engine, bytes).map_err(|e| HostError::InvalidComponent {
        name: name.to_owned(),
        source: e.into(),
    })?;
    let mismatch = |e: wasmtime::Error| HostError::WorldMismatch {
        name: name.to_owned(),
        source: e.into(),
    };
    let imports = imports(engine, &component);
    let instance_pre = linker.instantiate_pre(&component).map_err(mismatch)?;
    let pre = PluginPre::new(instance_pre).map_err(mismatch)?;
    Ok(LoadedPlugin {
        name: name.into(),
        digest: digest(bytes).into(),
        imports,
        pre: Arc::new(pre),
    })
}

#[cfg(test)]
mod tests {
    use super::{new_engine, not_a_component};
    use wasm_encoder::{
        Component, FieldType, Module, ModuleSection, StorageType, TypeSection, ValType,
    };

    /// A component holding one core module whose only content is `types`.
    fn component_with(types: TypeSection) -> Vec<u8> {
        let mut module = Module::new();
        module.section(&types);
        let mut component = Component::new();
        component.section(&ModuleSection(&module));
        component.finish()
    }

    /// Issue 23, point 6: a guest cannot reach wasmtime's GC heap. A
    /// component declaring a GC struct type is refused as it is compiled;
    /// the same component without it compiles.
    #[test]
    fn a_component_using_wasm_gc_is_refused() {
        let engine = new_engine(None, None).unwrap();
        let mut gc = TypeSection::new();
        gc.ty().struct_([FieldType {
            element_type: StorageType::Val(ValType::I32),
            mutable: true,
        }]);
        let err = wasmtime::component::Component::new(&engine, component_with(gc))
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(err.contains("gc") || err.contains("GC"), "{err}");
        let mut plain = TypeSection::new();
        plain.ty().function([ValType::I32], []);
        wasmtime::component::Component::new(&engine, component_with(plain)).unwrap();
    }

    /// Issue 13, point 8: a text file given as a component is named as such, in one line.
    #[test]
    fn a_file_that_is_not_a_component_is_told_in_a_sentence() {
        let text = not_a_component(b"hello world\n").unwrap_or_default();
        assert_eq!(
            text,
            "not a WebAssembly file: it starts with \"hello world.\", not the \\0asm header"
        );
        assert!(!text.contains('\n'));
        let core = not_a_component(b"\0asm\x01\0\0\0").unwrap_or_default();
        assert!(
            core.contains("core WebAssembly module, not a component"),
            "{core}"
        );
        assert!(not_a_component(b"\0asm\x0d\0\x01\0").is_none());
        assert!(not_a_component(b"").is_some());
    }
}
