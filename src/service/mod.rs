//! Installing spotguard as a per-user service: a systemd user unit on Linux ([`systemd`]), a
//! launchd agent on macOS, rendered from the templates in `systemd/` and `launchd/` (embedded).
//!
//! Rendering and planning are pure (paths in, file text and commands out), so `--dry-run`
//! prints exactly what a real install would write and run. Running the commands is the
//! caller's; nothing here touches the service manager.

pub mod systemd;

use std::path::{Path, PathBuf};

const LAUNCHD_TEMPLATE: &str = include_str!("../../launchd/io.github.spotguard.plist");
/// The launchd label, also the plist's file name.
pub const LAUNCHD_LABEL: &str = "io.github.spotguard";
/// The systemd unit's name.
pub const SYSTEMD_UNIT: &str = systemd::UNIT;

/// What cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("the path {path:?} cannot be written into a service file ({why}); choose another path")]
    Unrepresentable { path: PathBuf, why: &'static str },
}

/// Which service manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Systemd,
    Launchd,
}

impl Manager {
    /// The one this platform uses.
    pub fn native() -> Manager {
        if cfg!(target_os = "macos") { Manager::Launchd } else { Manager::Systemd }
    }
}

/// What the service runs and where: the binary, the config and the directories the sandbox
/// opens. (Named apart from `audit::Target`, which is what a seen device is taken for.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The absolute path of the spotguard binary.
    pub binary: PathBuf,
    /// `--config PATH` when a config file exists; the default location otherwise.
    pub config: Option<PathBuf>,
    /// The directory the config lives in (read-only in the sandbox; it may not exist).
    pub config_dir: PathBuf,
    /// The directory the daemon writes (database, tokens): writable in the sandbox.
    pub data_dir: PathBuf,
}

/// An install or uninstall to carry out: a file to write and the commands to run, in order.
/// (Named apart from `audit::Plan`, what one poll must record.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Steps {
    pub path: PathBuf,
    /// `None`: the file is to be removed.
    pub contents: Option<String>,
    pub commands: Vec<Vec<String>>,
}

/// A path as plist text: XML-escaped; control characters and the non-characters U+FFFE and
/// U+FFFF (which XML 1.0 cannot carry, or should not), and non-UTF-8 paths are refused.
/// launchd passes `ProgramArguments` as they are: no quoting, no expansion.
fn xml(p: &Path) -> Result<String, ServiceError> {
    let refuse = |why| ServiceError::Unrepresentable { path: p.to_path_buf(), why };
    let s = p.to_str().ok_or_else(|| refuse("it is not UTF-8"))?;
    if s.chars().any(|c| c.is_control() || matches!(c, '\u{FFFE}' | '\u{FFFF}')) {
        return Err(refuse("it holds a control character such as a newline"));
    }
    Ok(crate::text::escape_markup(s))
}

/// The LaunchAgent plist for `target`; logs go to `logs`.
pub fn render_launchd(target: &Paths, logs: &Path) -> Result<String, ServiceError> {
    let args = match &target.config {
        Some(c) => format!("\n        <string>--config</string>\n        <string>{}</string>", xml(c)?),
        None => String::new(),
    };
    Ok(LAUNCHD_TEMPLATE
        .replace("@BIN@", &xml(&target.binary)?)
        .replace("@ARGS@", &args)
        .replace("@LOGS@", &xml(logs)?))
}

/// Where the unit or agent goes, under `home` (and `$XDG_CONFIG_HOME` for systemd).
pub fn service_path(manager: Manager, home: &Path, xdg_config: Option<&Path>) -> PathBuf {
    match manager {
        Manager::Systemd => unit_dir(home, xdg_config).join(SYSTEMD_UNIT),
        Manager::Launchd => home.join("Library/LaunchAgents").join(format!("{LAUNCHD_LABEL}.plist")),
    }
}

/// The user's own systemd unit directory.
pub fn unit_dir(home: &Path, xdg_config: Option<&Path>) -> PathBuf {
    xdg_config.map_or_else(|| home.join(".config"), Path::to_path_buf).join("systemd/user")
}

/// Write the agent, then load it.
pub fn launchd_install(home: &Path, target: &Paths, uid: u32) -> Result<Steps, ServiceError> {
    let path = service_path(Manager::Launchd, home, None);
    let logs = home.join("Library/Logs/spotguard");
    let domain = format!("gui/{uid}");
    Ok(Steps {
        contents: Some(render_launchd(target, &logs)?),
        commands: vec![
            // Replacing a loaded agent needs it booted out first; failing that is fine.
            vec!["launchctl".into(), "bootout".into(), format!("{domain}/{LAUNCHD_LABEL}")],
            vec!["launchctl".into(), "bootstrap".into(), domain, path.display().to_string()],
        ],
        path,
    })
}

/// Unload and remove the agent. The data is left alone.
pub fn launchd_uninstall(home: &Path, uid: u32) -> Steps {
    Steps {
        path: service_path(Manager::Launchd, home, None),
        contents: None,
        commands: vec![vec!["launchctl".into(), "bootout".into(), format!("gui/{uid}/{LAUNCHD_LABEL}")]],
    }
}

/// A target with a space in the binary's path, for the rendering tests.
#[cfg(test)]
fn example_paths() -> Paths {
    Paths {
        binary: PathBuf::from("/opt/spot guard/bin/spotguard"),
        config: Some(PathBuf::from("/home/a/.config/spotguard/config.toml")),
        config_dir: PathBuf::from("/home/a/.config/spotguard"),
        data_dir: PathBuf::from("/home/a/.local/share/spotguard"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Paths {
        example_paths()
    }

    #[test]
    fn launchd_agent_escapes_paths_and_keeps_alive_on_crash_only() {
        let t = Paths { binary: PathBuf::from("/Apps/a&b/spotguard"), ..target() };
        let plist = render_launchd(&t, Path::new("/Users/a/Library/Logs/spotguard")).expect("renders");
        assert!(plist.contains("<string>/Apps/a&amp;b/spotguard</string>"));
        assert!(plist.contains("<string>--config</string>"));
        assert!(plist.contains("<key>SuccessfulExit</key>\n        <false/>"));
        assert!(plist.contains("/Users/a/Library/Logs/spotguard/spotguard.log"));
        for placeholder in ["@BIN@", "@ARGS@", "@LOGS@"] {
            assert!(!plist.contains(placeholder), "{placeholder} left in:\n{plist}");
        }
    }

    #[test]
    fn paths_and_plans() {
        let home = Path::new("/home/a");
        assert_eq!(
            service_path(Manager::Systemd, home, None),
            PathBuf::from("/home/a/.config/systemd/user/spotguard.service")
        );
        assert_eq!(
            service_path(Manager::Systemd, home, Some(Path::new("/x"))),
            PathBuf::from("/x/systemd/user/spotguard.service")
        );
        let p = launchd_install(home, &target(), 501).expect("renders");
        assert_eq!(p.path, PathBuf::from("/home/a/Library/LaunchAgents/io.github.spotguard.plist"));
        assert_eq!(p.commands[1][..3], ["launchctl", "bootstrap", "gui/501"]);
        let p = launchd_uninstall(home, 501);
        assert!(p.contents.is_none());
        let bad = Paths { config: Some(PathBuf::from("/Users/a/x\u{7}.toml")), ..target() };
        assert!(launchd_install(home, &bad, 501).is_err());
    }
}
