//! `levelhost new` and `levelhost build`: start a plugin project in any
//! supported language, and build it into `plugin.wasm`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use super::ExitStatus;

/// The languages `levelhost new` has a template for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, with wit-bindgen.
    Rust,
    /// JavaScript, with jco (SpiderMonkey).
    Js,
    /// TypeScript, with jco.
    Ts,
    /// Python, with componentize-py (CPython).
    Python,
    /// Go (stock Go for wasip1), with `levelhost wit` for the bindings and the component.
    Go,
    /// C, with clang for wasm32-wasi and `levelhost wit` for the bindings and the component.
    C,
}

/// The `level:api` WIT package, built into the binary so a new project is self-contained.
const WIT: [(&str, &str); 12] = [
    ("alerts.wit", include_str!("../../../wit/alerts.wit")),
    (
        "automations.wit",
        include_str!("../../../wit/automations.wit"),
    ),
    (
        "custom-field-values.wit",
        include_str!("../../../wit/custom-field-values.wit"),
    ),
    (
        "custom-fields.wit",
        include_str!("../../../wit/custom-fields.wit"),
    ),
    ("devices.wit", include_str!("../../../wit/devices.wit")),
    ("groups.wit", include_str!("../../../wit/groups.wit")),
    ("handler.wit", include_str!("../../../wit/handler.wit")),
    ("log.wit", include_str!("../../../wit/log.wit")),
    ("state.wit", include_str!("../../../wit/state.wit")),
    ("tags.wit", include_str!("../../../wit/tags.wit")),
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("worlds.wit", include_str!("../../../wit/worlds.wit")),
];

/// The Rust SDK (`plugins/sdk`), copied into a project as `levelhost-sdk/`;
/// [`NewArgs::execute`] points its bindings at the project's `wit/`.
const SDK_RUST: &str = include_str!("../../../plugins/sdk/src/lib.rs");

/// The Rust SDK's requests to connections (`levelhost_sdk::http`).
const SDK_RUST_HTTP: &str = include_str!("../../../plugins/sdk/src/http.rs");

/// The JavaScript SDK (also TypeScript's, with [`SDK_TS`] for its types).
const SDK_JS: (&str, &str) = (
    "levelhost.js",
    include_str!("../../../plugins/sdk-js/levelhost.js"),
);
/// The JavaScript SDK's types, for TypeScript.
const SDK_TS: (&str, &str) = (
    "levelhost.d.ts",
    include_str!("../../../plugins/sdk-js/levelhost.d.ts"),
);
/// The Python SDK.
const SDK_PYTHON: (&str, &str) = (
    "levelhost.py",
    include_str!("../../../plugins/sdk-python/levelhost.py"),
);
/// The JavaScript SDK's state helpers (they import `level:api/state`, so they are a module of their own).
const SDK_JS_STATE: (&str, &str) = (
    "levelhost-state.js",
    include_str!("../../../plugins/sdk-js/levelhost-state.js"),
);
/// Their types, for TypeScript.
const SDK_TS_STATE: (&str, &str) = (
    "levelhost-state.d.ts",
    include_str!("../../../plugins/sdk-js/levelhost-state.d.ts"),
);
/// The Python SDK's state helpers.
const SDK_PYTHON_HTTP: (&str, &str) = (
    "levelhost_http.py",
    include_str!("../../../plugins/sdk-python/levelhost_http.py"),
);
const SDK_PYTHON_STATE: (&str, &str) = (
    "levelhost_state.py",
    include_str!("../../../plugins/sdk-python/levelhost_state.py"),
);

/// What every project gets, whatever its language.
const COMMON: [(&str, &str); 2] = [
    (
        "README.md",
        include_str!("../../templates/common/README.md.tmpl"),
    ),
    (
        "tests.toml",
        include_str!("../../templates/common/tests.toml.tmpl"),
    ),
];

/// The README's line on the language's SDK.
fn sdk_note(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => {
            "- `levelhost-sdk/`: the SDK: the bindings of `wit/`, `export!`, `input`, `output`, `walk` over a \
             Level list, logging, `state` (the plugin's state, with JSON helpers), `http` (requests to the grant's \
             connections: `http::post(\"https://ticketing/Tickets\").json(&v).send()`); `src/lib.rs` is the plugin."
        }
        Lang::Js => {
            "- `levelhost.js`: the SDK: `plugin()` turns exceptions into run errors with their stack, \
             `pages()` walks a Level list, `log` writes structured logs; `console.log` goes to the run's logs. \
             `levelhost-state.js`: the plugin's state (`increment`, `getJson`, `setJson`, `entries`). \
             Connections: `run` may be `async`; call them with `fetch('https://ticketing/api/Tickets', ...)` \
             or `await call('POST', 'https://ticketing/api/Tickets', body)` once plugin.toml names their routes."
        }
        Lang::Ts => {
            "- `levelhost.js` and `levelhost.d.ts`: the SDK and its types: `plugin()` turns exceptions into run \
             errors with their stack, `pages()` walks a Level list, `log` writes structured logs. \
             `levelhost-state.js` (and `.d.ts`): the plugin's state (`increment`, `getJson`, `setJson`, `entries`). \
             Connections: `run` may be `async`; call them with `fetch('https://ticketing/api/Tickets', ...)` \
             or `await call('POST', 'https://ticketing/api/Tickets', body)` once plugin.toml names their routes."
        }
        Lang::Python => {
            "- `levelhost.py`: the SDK: `plugin()` turns exceptions into run errors with their traceback, \
             `pages()` walks a Level list, `log` writes structured logs; `print` goes to the run's logs. \
             `levelhost_state.py`: the plugin's state (`increment`, `get_json`, `set_json`, `entries`). \
             `levelhost_http.py`: connections, once plugin.toml names their routes \
             (`http.post(\"https://ticketing/api/Tickets\", json=ticket).json()`)."
        }
        Lang::Go => {
            "- `levelhost/levelhost.go`: the SDK: `Plugin` turns errors and panics into run errors, `Walk` \
             walks a Level list, `Info` writes structured logs; `levelhost/state/state.go`: the plugin's state \
             (`Increment`, `GetJSON`, `SetJSON`); `levelhost/connection/connection.go`: connections with Go's own \
             `net/http`, once plugin.toml names their routes (`connection.Client().Post(\"https://chat/\", \
             \"application/json\", body)`); `export_level_api_handler/run.go` is the plugin."
        }
        Lang::C => {
            "- `levelhost.h`: the SDK: `lh_output`, `lh_fail` and `lh_level` set the run's result, `lh_cursor_t` \
             walks a Level list, `lh_log` writes structured logs; `levelhost_state.h`: the plugin's state \
             (`lh_state_increment`, `lh_state_get_text`, `lh_state_set_text`); `levelhost_http.h`: connections, \
             once plugin.toml names their routes (`lh_http_post_json(\"https://chat/\", json, &response, &why)`, \
             `lh_http_send`, `lh_http_get`); `app.c` is the plugin."
        }
    }
}

fn template(lang: Lang) -> Vec<(&'static str, &'static str)> {
    match lang {
        Lang::Rust => vec![
            (
                "Cargo.toml",
                include_str!("../../templates/rust/Cargo.toml.tmpl"),
            ),
            (
                "src/lib.rs",
                include_str!("../../templates/rust/lib.rs.tmpl"),
            ),
            (
                "levelhost-sdk/Cargo.toml",
                include_str!("../../templates/rust/sdk-Cargo.toml.tmpl"),
            ),
            ("levelhost-sdk/src/lib.rs", SDK_RUST),
            ("levelhost-sdk/src/http.rs", SDK_RUST_HTTP),
            (
                "plugin.toml",
                include_str!("../../templates/rust/plugin.toml.tmpl"),
            ),
            (
                "build.sh",
                include_str!("../../templates/rust/build.sh.tmpl"),
            ),
            (
                ".gitignore",
                ".levelhost/\ntarget/\nlevelhost-sdk/target/\nplugin.wasm\n",
            ),
        ],
        Lang::Js => vec![
            ("app.js", include_str!("../../templates/js/app.js.tmpl")),
            SDK_JS,
            SDK_JS_STATE,
            (
                "package.json",
                include_str!("../../templates/js/package.json.tmpl"),
            ),
            (
                "plugin.toml",
                include_str!("../../templates/js/plugin.toml.tmpl"),
            ),
            ("build.sh", include_str!("../../templates/js/build.sh.tmpl")),
            (".gitignore", ".levelhost/\nnode_modules/\nplugin.wasm\n"),
        ],
        Lang::Ts => vec![
            ("app.ts", include_str!("../../templates/ts/app.ts.tmpl")),
            SDK_JS,
            SDK_TS,
            SDK_JS_STATE,
            SDK_TS_STATE,
            (
                "package.json",
                include_str!("../../templates/ts/package.json.tmpl"),
            ),
            (
                "plugin.toml",
                include_str!("../../templates/ts/plugin.toml.tmpl"),
            ),
            ("build.sh", include_str!("../../templates/ts/build.sh.tmpl")),
            (".gitignore", ".levelhost/\nnode_modules/\nplugin.wasm\n"),
        ],
        Lang::Python => vec![
            ("app.py", include_str!("../../templates/python/app.py.tmpl")),
            SDK_PYTHON,
            SDK_PYTHON_STATE,
            SDK_PYTHON_HTTP,
            (
                "plugin.toml",
                include_str!("../../templates/python/plugin.toml.tmpl"),
            ),
            (
                "build.sh",
                include_str!("../../templates/python/build.sh.tmpl"),
            ),
            (
                ".gitignore",
                ".levelhost/\n.venv/\n__pycache__/\nplugin.wasm\n",
            ),
        ],
        Lang::Go => vec![
            (
                "export_level_api_handler/run.go",
                include_str!("../../templates/go/run.go.tmpl"),
            ),
            (
                "levelhost/levelhost.go",
                include_str!("../../../plugins/sdk-go/levelhost.go"),
            ),
            (
                "levelhost/state/state.go",
                include_str!("../../../plugins/sdk-go/state/state.go"),
            ),
            (
                "levelhost/connection/connection.go",
                include_str!("../../../plugins/sdk-go/connection/connection.go"),
            ),
            (
                "plugin.toml",
                include_str!("../../templates/go/plugin.toml.tmpl"),
            ),
            ("build.sh", include_str!("../../templates/go/build.sh.tmpl")),
            (
                ".gitignore",
                ".levelhost/\n.venv/\ngo-pkg/\nlevel_api_*/\nwasi_*/\nwit_exports.go\ngo.mod\ngo.sum\n*.wasm\n",
            ),
        ],
        Lang::C => vec![
            ("app.c", include_str!("../../templates/c/app.c.tmpl")),
            (
                "levelhost.h",
                include_str!("../../../plugins/sdk-c/levelhost.h"),
            ),
            (
                "levelhost_state.h",
                include_str!("../../../plugins/sdk-c/levelhost_state.h"),
            ),
            (
                "levelhost_http.h",
                include_str!("../../../plugins/sdk-c/levelhost_http.h"),
            ),
            (
                "plugin.toml",
                include_str!("../../templates/c/plugin.toml.tmpl"),
            ),
            ("build.sh", include_str!("../../templates/c/build.sh.tmpl")),
            (".gitignore", ".levelhost/\ngen/\n*.wasm\n"),
        ],
    }
}

/// Arguments of `levelhost new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The plugin's name: lower-case letters, digits and dashes.
    pub name: String,
    /// The language.
    #[arg(long, value_enum, default_value = "rust")]
    pub lang: Lang,
    /// Where to create it (default: a folder named after the plugin).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

impl NewArgs {
    /// Writes the project. Refuses to touch a folder that is not empty.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let name = &self.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            || name.starts_with('-')
        {
            bail!("plugin name {name:?} must be lower-case letters, digits and dashes");
        }
        let dir = self.dir.clone().unwrap_or_else(|| PathBuf::from(name));
        if dir.exists()
            && std::fs::read_dir(&dir)
                .map(|mut d| d.next().is_some())
                .unwrap_or(true)
        {
            bail!(
                "{} already exists and is not empty; nothing was written",
                dir.display()
            );
        }
        let crate_name = name.replace('-', "_");
        let fill = |text: &str| {
            if text == SDK_RUST {
                // In the project the SDK sits beside `wit/`, and its crate
                // does not turn on the workspace's `missing_docs` lint.
                return text
                    .replace("path: \"../../wit\"", "path: \"../wit\"")
                    .replace(
                        "#[expect(\n    missing_docs,",
                        "#[allow(\n    missing_docs,",
                    );
            }
            text.replace("{{name}}", name)
                .replace("{{crate}}", &crate_name)
                .replace("{{sdk_note}}", sdk_note(self.lang))
        };
        let mut files: Vec<(PathBuf, String)> = template(self.lang)
            .into_iter()
            .chain(COMMON)
            .map(|(path, text)| (dir.join(path), fill(text)))
            .collect();
        files.extend(
            WIT.iter()
                .map(|(file, text)| (dir.join("wit").join(file), (*text).to_owned())),
        );
        for (path, text) in &files {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        make_executable(&dir.join("build.sh"))?;
        println!("Created {} ({:?}) in {}", name, self.lang, dir.display());
        println!("  build:  levelhost build {}", dir.display());
        println!(
            "  run:    levelhost run --sim {}",
            dir.join("plugin.wasm").display()
        );
        println!("  test:   levelhost test {}", dir.display());
        println!("  dev:    levelhost dev {}", dir.display());
        Ok(ExitStatus::Success)
    }
}

#[cfg(unix)]
fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut perms = std::fs::metadata(path)?.permissions();
    perms.set_mode(0o755);
    std::fs::set_permissions(path, perms)
        .with_context(|| format!("cannot make {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// Arguments of `levelhost build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The plugin project (made by `levelhost new`).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

impl BuildArgs {
    /// Runs the project's `build.sh`, which leaves `plugin.wasm` in the project.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let script = self.dir.join("build.sh");
        if !script.is_file() {
            bail!(
                "{} has no build.sh; is it a project made by `levelhost new`?",
                self.dir.display()
            );
        }
        // Build against a world of only what the manifest asks for, so the
        // component imports what its grant will cover (toolchains that bind
        // every import of their world, such as jco, componentize-py and
        // wit-bindgen go, otherwise import all of `level:api`).
        // plugin.toml is read once: checked before the build, and packed with
        // the component after it.
        let manifest_path = self.dir.join("plugin.toml");
        let source = levelhost_core::location::Source::read(&manifest_path)?;
        let manifest =
            levelhost_core::manifest::PluginManifest::parse(&manifest_path, &source.text)?;
        let wit = narrowed_wit(&self.dir, &manifest)?;
        let levelhost = std::env::current_exe().context("cannot find the levelhost executable")?;
        let status = Command::new("bash")
            .arg(&script)
            .env(crate::env_vars::EnvVars::LEVELHOST_WIT, &wit)
            .env(crate::env_vars::EnvVars::LEVELHOST, &levelhost)
            .status()
            .with_context(|| format!("cannot run {}", script.display()))?;
        if !status.success() {
            bail!("{} failed ({status})", script.display());
        }
        let wasm = self.dir.join("plugin.wasm");
        let bytes = match std::fs::read(&wasm) {
            Ok(bytes) => bytes,
            Err(_) => bail!("{} finished but left no plugin.wasm", script.display()),
        };
        // Check the component as `plugin pack` and an operator's `check` will,
        // so a mismatch with plugin.toml is found now, by the author.
        eprintln!(
            "checking {} ({:.1} MB) against plugin.toml; compiling it for this machine{}",
            wasm.display(),
            bytes.len() as f64 / 1e6,
            if bytes.len() > BIG_COMPONENT {
                " (a component with a language runtime inside takes a few seconds the first time; runs reuse the result)"
            } else {
                ""
            }
        );
        let started = std::time::Instant::now();
        let pkg = levelhost_packages::package::Package::from_parts(
            bytes,
            source.text,
            None,
            &manifest_path,
        )?;
        for warning in super::plugin::check_against_manifest(&pkg, &wasm, &manifest_path)? {
            eprintln!("warning: {warning}");
        }
        eprintln!(
            "{} {} is ready ({:.1?}): grant it {}",
            manifest.name,
            manifest.version,
            started.elapsed(),
            manifest.asks()
        );
        Ok(ExitStatus::Success)
    }
}

/// A component this big carries a language runtime (SpiderMonkey, CPython)
/// and takes seconds, not milliseconds, to compile.
const BIG_COMPONENT: usize = 2_000_000;

/// Where `levelhost build` writes the narrowed WIT package, in the project.
const NARROWED_WIT: &str = ".levelhost/wit";

/// Writes the project's `wit/` package to [`NARROWED_WIT`], with its
/// `plugin` world importing only the `level:api` interfaces `capabilities`
/// cover (and `log`), and returns that directory.
fn narrowed_wit(
    project: &Path,
    manifest: &levelhost_core::manifest::PluginManifest,
) -> anyhow::Result<PathBuf> {
    let from = project.join("wit");
    let to = project.join(NARROWED_WIT);
    if to.exists() {
        std::fs::remove_dir_all(&to).with_context(|| format!("cannot clear {}", to.display()))?;
    }
    std::fs::create_dir_all(&to).with_context(|| format!("cannot create {}", to.display()))?;
    let entries =
        std::fs::read_dir(&from).with_context(|| format!("cannot read {}", from.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot read {}", from.display()))?
            .path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        match name.as_deref() {
            Some("worlds.wit") | None => {}
            Some(name) if name.ends_with(".wit") => {
                std::fs::copy(&path, to.join(name))
                    .with_context(|| format!("cannot copy {}", path.display()))?;
            }
            Some(_) => {}
        }
    }
    let http = !manifest.connections.is_empty();
    if http {
        let deps = to.join("deps");
        std::fs::create_dir_all(&deps)
            .with_context(|| format!("cannot create {}", deps.display()))?;
        for (name, text) in WASI_WIT {
            std::fs::write(deps.join(name), text)
                .with_context(|| format!("cannot write {}", deps.join(name).display()))?;
        }
    }
    let worlds = to.join("worlds.wit");
    std::fs::write(&worlds, narrowed_world(&manifest.capabilities, http))
        .with_context(|| format!("cannot write {}", worlds.display()))?;
    // build.sh changes into the project first: hand it a path that holds from anywhere.
    std::fs::canonicalize(&to).with_context(|| format!("cannot find {}", to.display()))
}

/// The WASI packages `wasi:http` needs, as the host links them (see `host/wit-deps/README.md`).
const WASI_WIT: [(&str, &str); 7] = [
    ("cli.wit", include_str!("../../wit-deps/cli.wit")),
    ("clocks.wit", include_str!("../../wit-deps/clocks.wit")),
    (
        "filesystem.wit",
        include_str!("../../wit-deps/filesystem.wit"),
    ),
    ("http.wit", include_str!("../../wit-deps/http.wit")),
    ("io.wit", include_str!("../../wit-deps/io.wit")),
    ("random.wit", include_str!("../../wit-deps/random.wit")),
    ("sockets.wit", include_str!("../../wit-deps/sockets.wit")),
];

/// The `plugin` world, importing the `level:api` interfaces `capabilities`
/// cover, and `log`; and `wasi:http`'s outgoing handler when the plugin
/// calls connections (`http`).
fn narrowed_world(capabilities: &levelhost_core::capability::CapabilitySet, http: bool) -> String {
    use levelhost_core::capability::Resource;
    let mut text = String::from(
        "// Written by `levelhost build` from plugin.toml's capabilities: the\n\
         // interfaces this plugin's grant can cover. Edit plugin.toml, not this.\n\
         package level:api@0.1.0;\n\n\
         /// The plugin world, narrowed to what the manifest asks for.\n\
         @since(version = 0.1.0)\n\
         world plugin {\n",
    );
    for resource in Resource::ALL {
        if capabilities.iter().any(|c| c.resource == resource) {
            text.push_str(&format!("    import {};\n", resource.name()));
        }
    }
    text.push_str("    import log;\n");
    if http {
        text.push_str(
            "\n    /// Requests to the connections plugin.toml names, through the host's gate.\n    \
             import wasi:http/outgoing-handler@0.2.12;\n",
        );
    }
    text.push_str("\n    export handler;\n}\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_narrowed_world_imports_what_the_capabilities_cover() {
        let caps = ["devices:read", "tags:write", "tags:delete"]
            .iter()
            .map(|c| c.parse().unwrap())
            .collect();
        let world = narrowed_world(&caps, false);
        assert!(world.contains("import devices;") && world.contains("import tags;"));
        assert_eq!(world.matches("import tags;").count(), 1);
        assert!(!world.contains("import groups;") && world.contains("import log;"));
        assert!(!world.contains("wasi:http"));
        assert!(narrowed_world(&caps, true).contains("import wasi:http/outgoing-handler@0.2.12;"));
    }
}
