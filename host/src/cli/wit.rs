//! `levelhost wit`: the WIT steps of a C or Go plugin's build, done in
//! process, so a plugin author installs no `wit-bindgen` or `wasm-tools`
//! command and no Node.js packages: bindings from the WIT package, and a
//! component from a core WebAssembly module. `build.sh` of those templates
//! calls them through `$LEVELHOST`, which `levelhost build` sets.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use wit_bindgen_core::WorldGenerator;
use wit_bindgen_core::wit_parser::{Resolve, WorldId};

use super::ExitStatus;

/// Arguments of `levelhost wit`.
#[derive(Debug, clap::Args)]
pub struct WitArgs {
    /// The step.
    #[command(subcommand)]
    pub command: WitCommand,
}

/// The WIT steps of a plugin build.
#[derive(Debug, clap::Subcommand)]
pub enum WitCommand {
    /// Write the bindings of a world for C or Go (what `wit-bindgen c|go` writes).
    Bindgen {
        /// The language.
        #[arg(value_enum)]
        lang: BindgenLang,
        /// The WIT package: a folder or a file.
        wit: PathBuf,
        /// The world.
        #[arg(long, default_value = "plugin")]
        world: String,
        /// Where to write the files.
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
    },
    /// Make a component of a core WebAssembly module built for wasip1, with
    /// WASI preview 1 adapted to preview 2 (what `wasm-tools component new
    /// --adapt` does).
    Componentize {
        /// The core module.
        module: PathBuf,
        /// The WIT package whose world to embed first, for a module that does
        /// not carry it yet (Go's; C's links it in from the bindings).
        #[arg(long)]
        wit: Option<PathBuf>,
        /// The world.
        #[arg(long, default_value = "plugin")]
        world: String,
        /// The component to write.
        #[arg(short, long)]
        output: PathBuf,
    },
}

/// Languages `levelhost wit bindgen` writes bindings for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BindgenLang {
    /// C: `<world>.h`, `<world>.c` and `<world>_component_type.o`.
    C,
    /// Go: a package per interface, `wit_exports.go` and `go.mod`.
    Go,
}

impl WitArgs {
    /// Runs the step.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        match self.command {
            WitCommand::Bindgen {
                lang,
                wit,
                world,
                out_dir,
            } => bindgen(lang, &wit, &world, &out_dir)?,
            WitCommand::Componentize {
                module,
                wit,
                world,
                output,
            } => componentize(&module, wit.as_deref(), &world, &output)?,
        }
        Ok(ExitStatus::Success)
    }
}

/// The world `world` of the WIT package at `wit`.
fn world(wit: &Path, world: &str) -> anyhow::Result<(Resolve, WorldId)> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_path(wit)
        .with_context(|| format!("cannot read the WIT package at {}", wit.display()))?;
    let id = resolve
        .select_world(&[package], Some(world))
        .with_context(|| format!("{} has no world {world:?}", wit.display()))?;
    Ok((resolve, id))
}

fn bindgen(lang: BindgenLang, wit: &Path, world_name: &str, out: &Path) -> anyhow::Result<()> {
    let (mut resolve, id) = world(wit, world_name)?;
    let mut generator: Box<dyn WorldGenerator> = match lang {
        BindgenLang::C => wit_bindgen_c::Opts::default().build(),
        BindgenLang::Go => wit_bindgen_go::Opts {
            // gofmt is not needed to build, and may not be installed.
            format: wit_bindgen_go::Format::False,
            ..wit_bindgen_go::Opts::default()
        }
        .build(),
    };
    let mut files = wit_bindgen_core::Files::default();
    generator
        .generate(&mut resolve, id, &mut files)
        .with_context(|| format!("cannot generate {lang:?} bindings of {}", wit.display()))?;
    for (name, contents) in files.iter() {
        let path = out.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn componentize(
    module: &Path,
    wit: Option<&Path>,
    world_name: &str,
    output: &Path,
) -> anyhow::Result<()> {
    let mut bytes =
        std::fs::read(module).with_context(|| format!("cannot read {}", module.display()))?;
    if !bytes.starts_with(b"\0asm") {
        bail!("{} is not a WebAssembly module", module.display());
    }
    if let Some(wit) = wit {
        let (resolve, id) = world(wit, world_name)?;
        wit_component::embed_component_metadata(
            &mut bytes,
            &resolve,
            id,
            wit_component::StringEncoding::UTF8,
            false,
        )
        .with_context(|| {
            format!(
                "cannot embed the {world_name} world in {}",
                module.display()
            )
        })?;
    }
    let component = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&bytes)
        .with_context(|| {
            format!(
                "{} is not a module wit-component can read",
                module.display()
            )
        })?
        .adapter(
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .context("cannot load the WASI preview 1 adapter")?
        .encode()
        .with_context(|| format!("cannot make a component of {}", module.display()))?;
    std::fs::write(output, component).with_context(|| format!("cannot write {}", output.display()))
}
