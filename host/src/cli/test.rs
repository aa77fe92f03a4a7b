//! `levelhost test`: runs a plugin project's `tests.toml` against the simulator.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use levelhost_core::manifest::PluginManifest;
use levelhost_testing::cases::{self, TESTS_FILE, TestFile};

use super::ExitStatus;

/// Arguments of `levelhost test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The plugin project (made by `levelhost new`), with plugin.wasm built.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Run only the tests whose name contains this text.
    #[arg(long)]
    pub filter: Option<String>,
}

impl TestArgs {
    /// Runs each case against its own fresh simulator under the manifest's
    /// capabilities and prints what held and what did not.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let manifest = PluginManifest::load(&self.dir.join("plugin.toml"))?;
        let tests_path = self.dir.join(TESTS_FILE);
        if !tests_path.is_file() {
            bail!(
                "{} does not exist: write the project's test cases there (see the one `levelhost new` writes)",
                tests_path.display()
            );
        }
        let file = TestFile::load(&tests_path)?;
        let wasm = self.dir.join("plugin.wasm");
        if !wasm.is_file() {
            bail!(
                "{} does not exist: build it first with `levelhost build {}`",
                wasm.display(),
                self.dir.display()
            );
        }
        let runner = super::runner()?;
        let plugin = runner
            .load_file(&wasm)
            .with_context(|| format!("{}", wasm.display()))?;
        let selected: Vec<_> = file
            .tests
            .iter()
            .filter(|case| self.filter.as_ref().is_none_or(|f| case.name.contains(f)))
            .collect();
        println!(
            "running {} tests of {} against the simulator, with its grant: {}",
            selected.len(),
            manifest.name,
            manifest.asks()
        );
        let (mut passed, mut failed) = (0, 0);
        for case in selected {
            let result = cases::run_case(&runner, &plugin, &manifest, &tests_path, case).await?;
            if result.passed() {
                passed += 1;
                println!("test {} ... ok", result.name);
            } else {
                failed += 1;
                println!("test {} ... FAILED", result.name);
                for problem in &result.problems {
                    println!("    {problem}");
                }
                for (name, text) in [
                    ("stdout", &result.report.stdout),
                    ("stderr", &result.report.stderr),
                ] {
                    for line in text.lines() {
                        println!("    plugin {name}: {line}");
                    }
                }
            }
        }
        println!("{passed} passed, {failed} failed");
        Ok(if failed == 0 {
            ExitStatus::Success
        } else {
            ExitStatus::Failure
        })
    }
}
