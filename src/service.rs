//! Installing spotguard as a per-user service: a systemd user unit on Linux, a launchd agent
//! on macOS, rendered from the templates in `systemd/` and `launchd/` (embedded here).
//!
//! Rendering and planning are pure (paths in, file text and commands out), so `--dry-run`
//! prints exactly what a real install would write and run. Running the commands is the
//! caller's; nothing here touches the service manager.

use std::path::{Path, PathBuf};

const SYSTEMD_TEMPLATE: &str = include_str!("../systemd/spotguard.service");
const LAUNCHD_TEMPLATE: &str = include_str!("../launchd/io.github.spotguard.plist");
/// The launchd label, also the plist's file name.
pub const LAUNCHD_LABEL: &str = "io.github.spotguard";
/// The systemd unit's name.
pub const SYSTEMD_UNIT: &str = "spotguard.service";

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

/// What the service runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The absolute path of the spotguard binary.
    pub binary: PathBuf,
    /// `--config PATH` when a config file exists; the default location otherwise.
    pub config: Option<PathBuf>,
    /// The directory the daemon writes (database, tokens): writable in the sandbox.
    pub data_dir: PathBuf,
}

/// A file to write and the commands to run, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub path: PathBuf,
    /// `None`: the file is to be removed.
    pub contents: Option<String>,
    pub commands: Vec<Vec<String>>,
}

/// systemd wants paths with spaces quoted; `%` is its specifier character.
fn systemd_word(p: &Path) -> String {
    let s = p.display().to_string().replace('%', "%%");
    if s.contains([' ', '"', '\\']) {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s
    }
}

fn xml(s: &str) -> String {
    crate::text::escape_markup(s)
}

/// The unit file for `target`.
pub fn render_systemd(target: &Target) -> String {
    let args = target.config.as_ref().map(|c| format!(" --config {}", systemd_word(c))).unwrap_or_default();
    SYSTEMD_TEMPLATE
        .replace("@BIN@", &systemd_word(&target.binary))
        .replace("@ARGS@", &args)
        .replace("@DATA_DIR@", &systemd_word(&target.data_dir))
}

/// The LaunchAgent plist for `target`; logs go to `logs`.
pub fn render_launchd(target: &Target, logs: &Path) -> String {
    let args = target
        .config
        .as_ref()
        .map(|c| {
            format!(
                "\n        <string>--config</string>\n        <string>{}</string>",
                xml(&c.display().to_string())
            )
        })
        .unwrap_or_default();
    LAUNCHD_TEMPLATE
        .replace("@BIN@", &xml(&target.binary.display().to_string()))
        .replace("@ARGS@", &args)
        .replace("@LOGS@", &xml(&logs.display().to_string()))
}

/// Where the unit or agent goes, under `home` (and `$XDG_CONFIG_HOME` for systemd).
pub fn service_path(manager: Manager, home: &Path, xdg_config: Option<&Path>) -> PathBuf {
    match manager {
        Manager::Systemd => xdg_config
            .map_or_else(|| home.join(".config"), Path::to_path_buf)
            .join("systemd/user")
            .join(SYSTEMD_UNIT),
        Manager::Launchd => home.join("Library/LaunchAgents").join(format!("{LAUNCHD_LABEL}.plist")),
    }
}

fn cmd(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// Write the unit or agent, then enable and start it.
pub fn install(manager: Manager, home: &Path, xdg_config: Option<&Path>, target: &Target, uid: u32) -> Plan {
    let path = service_path(manager, home, xdg_config);
    match manager {
        Manager::Systemd => Plan {
            contents: Some(render_systemd(target)),
            commands: vec![
                cmd(&["systemctl", "--user", "daemon-reload"]),
                cmd(&["systemctl", "--user", "enable", "--now", SYSTEMD_UNIT]),
            ],
            path,
        },
        Manager::Launchd => {
            let logs = home.join("Library/Logs/spotguard");
            let domain = format!("gui/{uid}");
            Plan {
                contents: Some(render_launchd(target, &logs)),
                commands: vec![
                    // Replacing a loaded agent needs it booted out first; failing that is fine.
                    vec!["launchctl".into(), "bootout".into(), format!("{domain}/{LAUNCHD_LABEL}")],
                    vec!["launchctl".into(), "bootstrap".into(), domain, path.display().to_string()],
                ],
                path,
            }
        }
    }
}

/// Stop, disable and remove the unit or agent. The data is left alone.
pub fn uninstall(manager: Manager, home: &Path, xdg_config: Option<&Path>, uid: u32) -> Plan {
    let path = service_path(manager, home, xdg_config);
    let commands = match manager {
        Manager::Systemd => vec![
            cmd(&["systemctl", "--user", "disable", "--now", SYSTEMD_UNIT]),
            cmd(&["systemctl", "--user", "daemon-reload"]),
        ],
        Manager::Launchd => {
            vec![vec!["launchctl".into(), "bootout".into(), format!("gui/{uid}/{LAUNCHD_LABEL}")]]
        }
    };
    Plan { path, contents: None, commands }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            binary: PathBuf::from("/opt/spot guard/bin/spotguard"),
            config: Some(PathBuf::from("/home/a/.config/spotguard/config.toml")),
            data_dir: PathBuf::from("/home/a/.local/share/spotguard"),
        }
    }

    #[test]
    fn systemd_unit_has_real_paths_and_the_promised_settings() {
        let unit = render_systemd(&target());
        for placeholder in ["@BIN@", "@ARGS@", "@DATA_DIR@"] {
            assert!(!unit.contains(placeholder), "{placeholder} left in:\n{unit}");
        }
        assert!(unit.contains(
            "ExecStart=\"/opt/spot guard/bin/spotguard\" run --config /home/a/.config/spotguard/config.toml"
        ));
        assert!(unit.contains("ReadWritePaths=/home/a/.local/share/spotguard"));
        for line in [
            "Type=notify",
            "WatchdogSec=120",
            "Restart=on-failure",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=read-only",
            "PrivateTmp=yes",
            "MemoryDenyWriteExecute=yes",
            "WantedBy=default.target",
        ] {
            assert!(unit.lines().any(|l| l == line), "missing {line}");
        }
    }

    #[test]
    fn without_a_config_file_no_config_flag() {
        let unit = render_systemd(&Target { config: None, ..target() });
        assert!(unit.contains("ExecStart=\"/opt/spot guard/bin/spotguard\" run\n"), "{unit}");
    }

    #[test]
    fn launchd_agent_escapes_paths_and_keeps_alive_on_crash_only() {
        let t = Target { binary: PathBuf::from("/Apps/a&b/spotguard"), ..target() };
        let plist = render_launchd(&t, Path::new("/Users/a/Library/Logs/spotguard"));
        assert!(plist.contains("<string>/Apps/a&amp;b/spotguard</string>"));
        assert!(plist.contains("<string>--config</string>"));
        assert!(plist.contains("<key>SuccessfulExit</key>\n        <false/>"));
        assert!(plist.contains("/Users/a/Library/Logs/spotguard/spotguard.log"));
        for placeholder in ["@BIN@", "@ARGS@", "@LOGS@"] {
            assert!(!plist.contains(placeholder), "{placeholder} left in:\n{plist}");
        }
    }

    #[test]
    fn plans_name_the_files_and_commands() {
        let home = Path::new("/home/a");
        let p = install(Manager::Systemd, home, None, &target(), 1000);
        assert_eq!(p.path, PathBuf::from("/home/a/.config/systemd/user/spotguard.service"));
        assert_eq!(p.commands[1], ["systemctl", "--user", "enable", "--now", "spotguard.service"]);
        let p = install(Manager::Launchd, home, None, &target(), 501);
        assert_eq!(p.path, PathBuf::from("/home/a/Library/LaunchAgents/io.github.spotguard.plist"));
        assert_eq!(p.commands[1][..3], ["launchctl", "bootstrap", "gui/501"]);
        let p = uninstall(Manager::Systemd, home, Some(Path::new("/x")), 1000);
        assert_eq!(p.path, PathBuf::from("/x/systemd/user/spotguard.service"));
        assert!(p.contents.is_none());
    }
}
