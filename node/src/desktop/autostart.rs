//! Starting with the session: an XDG autostart entry (`~/.config/autostart/*.desktop`)
//! written when `desktop.autostart` is on and removed when it is off. The entry starts
//! the app (`lanchat`) hidden in the tray, with this data directory when it is not the default.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum AutostartError {
    #[error("no config directory for this user (XDG_CONFIG_HOME and HOME are unset)")]
    NoConfigDir,
    #[error("cannot update {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// 16 hex digits of FNV-1a over the canonical path: stable across versions and
/// builds (std's hasher promises neither), and valid in a file name.
pub fn dir_key(data_dir: &Path) -> String {
    let canonical = std::fs::canonicalize(data_dir)
        .or_else(|_| std::path::absolute(data_dir))
        .unwrap_or_else(|_| data_dir.to_path_buf());
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in canonical.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// `~/.config/autostart/lanchat.desktop`, or `lanchat-<hash>.desktop` for another data
/// directory, so that several profiles can each start with the session.
pub fn entry_path(data_dir: &Path, default_dir: Option<&Path>) -> Result<PathBuf, AutostartError> {
    let config = dirs::config_dir().ok_or(AutostartError::NoConfigDir)?;
    let name = if Some(data_dir) == default_dir {
        "lanchat.desktop".to_string()
    } else {
        format!("lanchat-{}.desktop", dir_key(data_dir))
    };
    Ok(config.join("autostart").join(name))
}

pub fn entry(exe: &Path, data_dir: &Path, default_dir: Option<&Path>) -> String {
    let mut exec = quote(&exe.to_string_lossy());
    if Some(data_dir) != default_dir {
        exec.push_str(" --data-dir ");
        exec.push_str(&quote(&data_dir.to_string_lossy()));
    }
    exec.push_str(" --hidden");
    format!(
        "[Desktop Entry]\nType=Application\nName=lanchat\nComment=Serverless LAN messenger\n\
         Exec={exec}\nIcon=lanchat\nTerminal=false\nCategories=Network;InstantMessaging;\n\
         X-GNOME-Autostart-enabled=true\n"
    )
}

/// The Exec key's quoting: double quotes around arguments with anything but plain
/// characters, with `"`, `` ` ``, `$` and `\` escaped by a backslash — written doubled,
/// since the file's string escapes are undone first — and `%` doubled (field codes).
fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,=:".contains(c));
    let arg = arg.replace('%', "%%");
    if plain {
        return arg;
    }
    let mut out = String::from("\"");
    for c in arg.chars() {
        if matches!(c, '"' | '`' | '$' | '\\') {
            out.push_str("\\\\");
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Makes the entry match the setting. Writes only when the content differs.
pub fn apply(enabled: bool, data_dir: &Path) -> Result<(), AutostartError> {
    let default_dir = crate::cli::default_data_dir();
    let path = entry_path(data_dir, default_dir.as_deref())?;
    let io = |source| AutostartError::Io {
        path: path.clone(),
        source,
    };
    if !enabled {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
            _ => Ok(()),
        };
    }
    // The app, not this node binary: a login then starts what the user starts.
    let exe = match super::app_binary() {
        Some(app) => app,
        None => std::env::current_exe().map_err(io)?,
    };
    let body = entry(&exe, data_dir, default_dir.as_deref());
    if std::fs::read_to_string(&path).ok().as_deref() == Some(body.as_str()) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(&path, body).map_err(io)?;
    tracing::info!(path = %path.display(), "autostart entry written");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_the_data_dir_only_when_not_the_default() {
        let exe = Path::new("/usr/bin/lanchat");
        let default = Path::new("/home/li/.local/share/lanchat");
        let own = entry(exe, default, Some(default));
        assert!(own.contains("\nExec=/usr/bin/lanchat --hidden\n"), "{own}");
        let other = entry(exe, Path::new("/tmp/my profile$1"), Some(default));
        assert!(
            other.contains(r#"Exec=/usr/bin/lanchat --data-dir "/tmp/my profile\\$1" --hidden"#),
            "{other}"
        );
        assert_eq!(quote("/tmp/50%"), "\"/tmp/50%%\"");
    }

    #[test]
    fn keys_differ_per_directory_and_are_stable() {
        let a = dir_key(Path::new("/tmp/lanchat-a"));
        assert_eq!(a, dir_key(Path::new("/tmp/lanchat-a")));
        assert_ne!(a, dir_key(Path::new("/tmp/lanchat-b")));
        assert_eq!(a.len(), 16);
    }
}
