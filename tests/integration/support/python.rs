//! The Python the interop tests run (`tests/interop/` on py-eureka-client, and schemathesis):
//! `AGORA_PYTHON` if set, else a virtualenv this module makes in `<target dir>/test-venv` on
//! first use (`python3 -m venv`, then the pinned packages from PyPI) and reuses afterwards.
//! Nothing but this module writes that directory. A machine that cannot have it (no `python3`,
//! no `venv` module, PyPI out of reach) fails the test that asked, saying what to install.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context};

/// What the tests need, pinned; `.ci/run` used to pin the same.
const PACKAGES: [&str; 2] = ["py-eureka-client==0.13.3", "schemathesis==4.32.5"];

/// In the virtualenv, written last: the venv is complete and holds exactly [`PACKAGES`].
const STAMP: &str = "agora-packages.txt";

/// The python to run the interop scripts and schemathesis (its `st` is beside it). The first
/// caller in this process finds or makes it, the others wait for that one; a failure fails every
/// caller with the same message.
pub fn agora_python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| python().map_err(|e| format!("{e:#}")));
    match found {
        Ok(python) => python.clone(),
        Err(why) => panic!(
            "this test needs Python with {}: {why}",
            PACKAGES.join(" and ")
        ),
    }
}

fn python() -> anyhow::Result<PathBuf> {
    if let Some(python) = std::env::var_os("AGORA_PYTHON") {
        let python = PathBuf::from(python);
        check(&python).with_context(|| {
            format!(
                "AGORA_PYTHON={} lacks them (pip install {}, or unset AGORA_PYTHON for the \
                 tests to make their own virtualenv)",
                python.display(),
                PACKAGES.join(" ")
            )
        })?;
        return Ok(python);
    }
    let venv = target_dir().join("test-venv");
    fs::create_dir_all(target_dir()).context("the target directory")?;
    // Another `cargo test` process may be making it too: one at a time.
    let lock = File::create(venv.with_extension("lock")).context("the virtualenv's lock file")?;
    lock.lock().context("locking the virtualenv")?;
    let python = venv.join("bin").join("python");
    let stamp = venv.join(STAMP);
    let wanted = PACKAGES.join("\n");
    if fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) && check(&python).is_ok() {
        return Ok(python);
    }
    make(&venv)?;
    check(&python).context("the new virtualenv")?;
    fs::write(&stamp, wanted).context("the virtualenv's stamp")?;
    Ok(python)
}

/// `CARGO_TARGET_DIR` (relative to the package, as cargo takes it), else `target/`.
pub fn target_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| manifest.join("target"), |t| manifest.join(t))
}

/// A fresh virtualenv at `venv` with [`PACKAGES`] installed.
fn make(venv: &Path) -> anyhow::Result<()> {
    const INSTALL: &str = "install python3 and its venv module (Debian or Ubuntu: apt-get \
                           install python3 python3-venv), or set AGORA_PYTHON to a python \
                           that has the packages";
    let has_venv = Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .output()
        .with_context(|| format!("python3 is not on PATH: {INSTALL}"))?;
    if !has_venv.status.success() {
        bail!("python3 has no venv or ensurepip module: {INSTALL}");
    }
    eprintln!(
        "making the tests' virtualenv in {} (once; half a minute or so)",
        venv.display()
    );
    if venv.exists() {
        fs::remove_dir_all(venv).context("removing an incomplete virtualenv")?;
    }
    run(Command::new("python3").args(["-m", "venv"]).arg(venv))
        .with_context(|| format!("python3 -m venv {}: {INSTALL}", venv.display()))?;
    let pip = venv.join("bin").join("pip");
    run(Command::new(pip)
        .args(["install", "-q", "--disable-pip-version-check"])
        .args(PACKAGES))
    .context(
        "pip install from PyPI failed: is pypi.org reachable (or PIP_INDEX_URL set to a \
         mirror)? Or set AGORA_PYTHON to a python that has the packages",
    )
}

/// Whether `python` imports both packages.
fn check(python: &Path) -> anyhow::Result<()> {
    run(Command::new(python).args(["-c", "import py_eureka_client, schemathesis"]))
}

/// Runs `command`; its stderr is the error when it fails.
fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("{:?} does not start", command.get_program()))?;
    if !output.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            command.get_program(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
