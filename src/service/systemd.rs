//! The systemd user unit: rendering, the two sandbox profiles, the probe that picks one, and
//! reading what `systemctl show` says about the unit once it is started.
//!
//! The shipped unit is the *full* profile: its own user namespace (`PrivateUsers=yes`, without
//! which a user manager before systemd 257 cannot drop capabilities and silently skips the
//! mount options), a read-only system, an empty home with the data dir bound in. Hosts that
//! forbid unprivileged user namespaces (Ubuntu's AppArmor restriction, `max_user_namespaces=0`)
//! cannot start it; for them `service install` adds the *reduced* profile as a drop-in, which
//! keeps every protection that needs no namespace (seccomp filters, no new privileges, no W+X
//! memory). Which one a host gets is decided by starting a transient unit with the same
//! properties ([`probe_command`]), never by guessing from version numbers.
//!
//! Everything here is pure: text and argument lists in and out. Running them is the CLI's.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{Paths, ServiceError};

const TEMPLATE: &str = include_str!("../../systemd/spotguard.service");

/// The unit's name.
pub const UNIT: &str = "spotguard.service";

/// Where a distribution package puts the unit (the Debian package does).
pub const PACKAGED_UNIT: &str = "/usr/lib/systemd/user/spotguard.service";

/// The binary path the packaged unit runs.
pub const PACKAGED_BINARY: &str = "/usr/bin/spotguard";

/// The drop-in that selects the reduced profile, in `spotguard.service.d/`.
pub const PROFILE_DROPIN: &str = "profile.conf";

/// The drop-in that carries the installing session's display variables, in `spotguard.service.d/`.
pub const SESSION_DROPIN: &str = "session.conf";

/// The marker line in the template after which every `[Service]` line is a sandbox setting.
const HARDENING_MARKER: &str = "# Hardening";

/// The display variables a browser needs. The user manager often lacks them (desktops that
/// never import them into it), and the URL opener runs through it.
pub const DISPLAY_VARS: [&str; 4] = ["DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY", "XDG_SESSION_TYPE"];

/// The prefix under which `session.conf` passes the installing session's display variables
/// to the daemon, for the opener to use when the manager's own are missing.
pub const SESSION_VAR_PREFIX: &str = "SPOTGUARD_SESSION_";

/// Which sandbox the unit runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The shipped unit as it is.
    Full,
    /// The shipped unit plus [`REDUCED`] as a drop-in.
    Reduced,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Full => "full",
            Profile::Reduced => "reduced",
        }
    }

    /// One line for a person: what this profile protects.
    pub fn describe(self) -> &'static str {
        match self {
            Profile::Full => {
                "own user namespace, read-only system, home and /run/user hidden except the data dir and \
                 the session bus, no capabilities, system-call filter"
            }
            Profile::Reduced => {
                "system-call filter, no new privileges, no W+X memory; no namespaces (this host does not \
                 allow unprivileged user namespaces)"
            }
        }
    }
}

/// The reduced profile: every setting that needs a mount or user namespace, or dropping
/// capabilities (which needs one in a user manager), switched off; the seccomp-based ones
/// (`SystemCallFilter`, `RestrictNamespaces`, `RestrictRealtime`, `RestrictSUIDSGID`,
/// `MemoryDenyWriteExecute`, `LockPersonality`, `RestrictAddressFamilies`), `NoNewPrivileges`
/// and `UMask` stay.
pub const REDUCED: &[&str] = &[
    "PrivateUsers=no",
    "PrivateMounts=no",
    "ProtectSystem=no",
    "ProtectHome=no",
    "BindPaths=",
    "BindReadOnlyPaths=",
    "KeyringMode=inherit",
    "PrivateTmp=no",
    "PrivateDevices=no",
    "ProtectKernelTunables=no",
    "ProtectKernelModules=no",
    "ProtectKernelLogs=no",
    "ProtectControlGroups=no",
    "ProtectClock=no",
    "ProtectHostname=no",
    // An empty assignment resets the list; `~` with nothing after it keeps every capability
    // in the bounding set, i.e. leaves it alone.
    "CapabilityBoundingSet=",
    "CapabilityBoundingSet=~",
];

/// Where a path goes in a unit file: systemd reads the places differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The program of `ExecStart=`, or an entry of `BindPaths=`/`BindReadOnlyPaths=`: `%` starts
    /// a specifier, white space and (in the bind lists) `:` separate words.
    Path,
    /// An argument of `ExecStart=`: as [`Place::Path`], and `$` starts a variable (`${HOME}`);
    /// `$$` is one `$`. The program itself is never expanded, so it keeps its `$`.
    Argument,
}

/// A path as one word of a unit file: `%` doubled (systemd's specifier character), `$`
/// doubled in arguments, and the whole word in double quotes (with `\` and `"` escaped)
/// when it holds a space, a quote, a backslash or a `:`, which a bind list would read as the
/// start of a destination. A path that cannot be one word is refused: a control character
/// (a newline would start a new directive), one that is not UTF-8, or a relative one.
pub fn unit_word(p: &Path, place: Place) -> Result<String, ServiceError> {
    let refuse = |why| ServiceError::Unrepresentable { path: p.to_path_buf(), why };
    let s = p.to_str().ok_or_else(|| refuse("it is not UTF-8"))?;
    if s.chars().any(char::is_control) {
        return Err(refuse("it holds a control character such as a newline"));
    }
    if !p.is_absolute() {
        return Err(refuse("it is not absolute"));
    }
    let mut s = s.replace('%', "%%");
    if place == Place::Argument {
        s = s.replace('$', "$$");
    }
    Ok(if s.contains([' ', '"', '\\', '\'', ':']) {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s
    })
}

/// The unit file for `target`.
pub fn render(target: &Paths) -> Result<String, ServiceError> {
    // Every path of the target goes through `unit_word`: none reaches the text unchecked.
    let args = match &target.config {
        Some(c) => format!(" --config {}", unit_word(c, Place::Argument)?),
        None => String::new(),
    };
    // `-`: a config dir that does not exist (defaults only) is not an error.
    let read_only = format!(
        "-{} {}",
        unit_word(&target.config_dir, Place::Path)?,
        unit_word(&target.binary, Place::Path)?
    );
    Ok(fill(
        &unit_word(&target.binary, Place::Path)?,
        &args,
        &unit_word(&target.data_dir, Place::Path)?,
        &read_only,
    ))
}

/// The unit the Debian package ships: `/usr/bin/spotguard`, the default config, and the
/// default data dir written with specifiers (`%h` home, `%E` the user's config dir).
pub fn render_packaged() -> String {
    fill(PACKAGED_BINARY, "", "%h/.local/share/spotguard", "-%E/spotguard")
}

fn fill(bin: &str, args: &str, data_dir: &str, read_only: &str) -> String {
    TEMPLATE
        .replace("@BIN@", bin)
        .replace("@ARGS@", args)
        .replace("@DATA_DIR@", data_dir)
        .replace("@READ_ONLY@", read_only)
}

/// Whether the packaged unit runs `target` as it is: the packaged binary, the default config
/// and data locations. Then `service install` only enables it.
pub fn packaged_fits(target: &Paths, home: &Path, default_config_dir: &Path) -> bool {
    target.binary == Path::new(PACKAGED_BINARY)
        && target.config.as_ref().is_none_or(|c| c.parent() == Some(default_config_dir))
        && target.config_dir == default_config_dir
        && target.data_dir == home.join(".local/share/spotguard")
}

/// The drop-in directory beside the user's unit path.
pub fn dropin_dir(unit_dir: &Path) -> PathBuf {
    unit_dir.join(format!("{UNIT}.d"))
}

/// The reduced profile's drop-in, with the reason the full one did not start.
pub fn reduced_dropin(reason: &str) -> String {
    let mut s = String::from(
        "# Written by `spotguard service install`: the full sandbox did not start on this host, so\n\
         # this drop-in switches off what needs user or mount namespaces. Remove this file and run\n\
         # `systemctl --user daemon-reload` (or run `spotguard service install` again) to retry.\n",
    );
    // The reason is systemd's own words; keep it to one comment line.
    let reason: String = reason.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let _ = writeln!(s, "# Why: {reason}");
    s.push_str("[Service]\n");
    for line in REDUCED {
        s.push_str(line);
        s.push('\n');
    }
    s
}

/// The session drop-in: the display variables of the session that ran `service install`,
/// under [`SESSION_VAR_PREFIX`], for the URL opener. `None` when the session has none.
pub fn session_dropin(vars: &[(&str, String)]) -> Option<String> {
    let lines: Vec<String> = vars
        .iter()
        .filter(|(_, v)| !v.is_empty() && !v.chars().any(char::is_control))
        .map(|(k, v)| {
            let value = format!("{SESSION_VAR_PREFIX}{k}={v}").replace('%', "%%");
            format!("Environment=\"{}\"\n", value.replace('\\', "\\\\").replace('"', "\\\""))
        })
        .collect();
    if lines.is_empty() {
        return None;
    }
    Some(format!(
        "# Written by `spotguard service install`: the display of the session it ran in, so that\n\
         # \"Sign out everywhere\" can open a browser when the user manager does not know it.\n\
         [Service]\n{}",
        lines.concat()
    ))
}

/// The sandbox settings of a unit text: every `[Service]` line after the hardening marker,
/// plus `LimitCORE`. These are what the probe starts a transient unit with. Transient units
/// get no specifier expansion, so `%t` becomes `runtime_dir` and `%%` a plain `%` here.
pub fn sandbox_settings(unit: &str, runtime_dir: &Path) -> Vec<String> {
    let runtime = runtime_dir.display().to_string();
    let expand = |line: &str| line.replace("%%", "\u{0}").replace("%t", &runtime).replace('\u{0}', "%");
    let mut in_service = false;
    let mut hardening = false;
    let mut out = Vec::new();
    for line in unit.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        if !in_service {
            continue;
        }
        if line.starts_with(HARDENING_MARKER) {
            hardening = true;
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if hardening || line.starts_with("LimitCORE=") {
            out.push(expand(line));
        }
    }
    out
}

/// The reduced profile's settings for a probe: the full ones with every key that
/// [`REDUCED`] switches off replaced by its value there. Transient units take no empty
/// (resetting) assignments, so those keys are simply left out.
pub fn reduced_settings(full: &[String]) -> Vec<String> {
    let key = |s: &str| s.split_once('=').map_or(s, |(k, _)| k).to_string();
    let reduced_keys: Vec<String> = REDUCED.iter().map(|s| key(s)).collect();
    let mut out: Vec<String> = full.iter().filter(|s| !reduced_keys.contains(&key(s))).cloned().collect();
    out.extend(REDUCED.iter().filter(|s| !s.ends_with('=') && !s.ends_with("=~")).map(|s| s.to_string()));
    out
}

/// The probe unit's name for `profile` in this process.
pub fn probe_unit(profile: Profile) -> String {
    format!("spotguard-probe-{}-{}.service", profile.name(), std::process::id())
}

/// The transient unit that tells whether `settings` start on this host: `systemd-run` runs
/// `spotguard service self-check` under them and waits for it. The unit is named
/// `spotguard-probe-<profile>-<pid>`: it reads well in the journal, and an administrator can
/// give every probe a drop-in (`spotguard-probe-.service.d/`), as the booted-system test does
/// for what its container cannot provide.
pub fn probe_command(profile: Profile, settings: &[String], self_check: &[String]) -> Vec<String> {
    let mut cmd: Vec<String> =
        // Not --quiet: systemd-run then says how the unit ended ("status=226/NAMESPACE"), which
        // its own exit code does not always carry (systemd 252 exits 1). Not --collect: a
        // probe that failed stays loaded, so its exit status can be read (systemctl show),
        // then it is reset; one that succeeded is unloaded as usual.
        ["systemd-run", "--user", "--wait", "--service-type=exec"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    cmd.push(format!("--unit={}", probe_unit(profile)));
    for s in settings {
        cmd.push("-p".into());
        cmd.push(s.clone());
    }
    cmd.push("--".into());
    cmd.extend(self_check.iter().cloned());
    cmd
}

/// Why a probe did not run, from `systemd-run --wait`'s exit code and stderr: the unit's own
/// exit status where systemd-run reports it ("status=226/NAMESPACE"), else its exit code and
/// its first line that is not a progress note.
pub fn probe_failure(code: Option<i32>, stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if let Some(status) = lines
        .iter()
        .find_map(|l| l.strip_prefix("Main processes terminated with: "))
        .and_then(|rest| rest.split(", ").find(|part| part.starts_with("status=")))
    {
        return status.to_string();
    }
    let mut why = match code {
        Some(c) => match exit_code_name(c) {
            Some(name) => format!("status={c}/{name}"),
            None => format!("status={c}"),
        },
        None => "killed".to_string(),
    };
    let note = |l: &&&str| {
        l.starts_with("Running as unit")
            || l.starts_with("Service runtime")
            || l.starts_with("Finished with result")
            || l.starts_with("CPU time consumed")
    };
    if let Some(line) = lines.iter().find(|l| !note(l)) {
        why.push_str(": ");
        why.push_str(line);
    } else if let Some(result) = lines.iter().find_map(|l| l.strip_prefix("Finished with result: ")) {
        why.push_str(", result ");
        why.push_str(result);
    }
    why
}

/// What `systemctl --user show` says of the unit (the properties [`SHOW_PROPERTIES`] asks for).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitState {
    pub active: String,
    pub sub: String,
    pub result: String,
    /// `exited`, `killed`, `dumped`, or empty.
    pub main_code: String,
    pub main_status: Option<i32>,
    pub status_text: String,
    /// Which run of the unit this is: a restart gives a new one.
    pub invocation: String,
}

/// The properties [`UnitState::parse`] reads.
pub const SHOW_PROPERTIES: &str =
    "ActiveState,SubState,Result,ExecMainCode,ExecMainStatus,StatusText,InvocationID";

impl UnitState {
    /// Parses `KEY=VALUE` lines.
    pub fn parse(text: &str) -> UnitState {
        let mut s = UnitState::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else { continue };
            match k {
                "ActiveState" => s.active = v.into(),
                "SubState" => s.sub = v.into(),
                "Result" => s.result = v.into(),
                "ExecMainCode" => {
                    s.main_code = match v {
                        "1" => "exited".into(),
                        "2" => "killed".into(),
                        "3" => "dumped".into(),
                        _ => v.into(),
                    }
                }
                "ExecMainStatus" => s.main_status = v.parse().ok(),
                "StatusText" => s.status_text = v.into(),
                "InvocationID" => s.invocation = v.into(),
                _ => {}
            }
        }
        s
    }

    /// Where a start stands.
    pub fn verdict(&self) -> Verdict {
        match (self.active.as_str(), self.sub.as_str()) {
            ("active", "running") | ("reloading", _) => Verdict::Running,
            ("failed", _) => Verdict::Failed,
            // It ran and died: the manager restarts it, but it will most likely die again.
            ("activating", "auto-restart") => Verdict::Failed,
            ("inactive", _) if self.result != "success" && !self.result.is_empty() => Verdict::Failed,
            _ => Verdict::Starting,
        }
    }

    /// "status=218/CAPABILITIES" for a unit that exited with a code, "signal 9" when killed.
    pub fn exit_status(&self) -> Option<String> {
        let status = self.main_status?;
        match self.main_code.as_str() {
            "exited" if status != 0 => Some(match exit_code_name(status) {
                Some(name) => format!("status={status}/{name}"),
                None => format!("status={status}"),
            }),
            "killed" | "dumped" => Some(format!("signal {status}")),
            _ => None,
        }
    }

    /// One sentence for `service status` and a failed install.
    pub fn describe(&self) -> String {
        let mut s = format!("{} ({})", self.active, self.sub);
        if self.result == "start-limit-hit" {
            s.push_str(
                ": it failed to start 5 times within 5 minutes, so systemd stopped retrying \
                 (`systemctl --user reset-failed spotguard` then `systemctl --user start spotguard` \
                 once the cause is fixed)",
            );
        } else if !self.result.is_empty() && self.result != "success" {
            let _ = write!(s, ", result {}", self.result);
        }
        if let Some(e) = self.exit_status() {
            let _ = write!(s, ", last exit {e}");
        }
        s
    }
}

/// How a start is going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Running,
    Starting,
    Failed,
}

/// systemd's exit codes for a unit that failed before running its program
/// (systemd.exec(5), "Process Exit Codes"), and the ones spotguard itself uses.
pub fn exit_code_name(code: i32) -> Option<&'static str> {
    Some(match code {
        1 => "FAILURE",
        2 => "INVALIDARGUMENT",
        200 => "CHDIR",
        203 => "EXEC",
        204 => "MEMORY",
        205 => "LIMITS",
        209 => "STDOUT",
        210 => "CHROOT",
        214 => "SETSCHEDULER",
        216 => "GROUP",
        217 => "USER",
        218 => "CAPABILITIES",
        219 => "CGROUP",
        224 => "PAM",
        225 => "NETWORK",
        226 => "NAMESPACE",
        227 => "NO_NEW_PRIVILEGES",
        228 => "SECCOMP",
        230 => "PERSONALITY",
        231 => "APPARMOR_PROFILE",
        232 => "ADDRESS_FAMILIES",
        233 => "RUNTIME_DIRECTORY",
        237 => "KEYRING",
        242 => "NUMA_POLICY",
        243 => "CREDENTIALS",
        245 => "BPF",
        _ => return None,
    })
}

/// Whether a `systemctl --user` failure means it could not reach the user manager at all
/// (ssh without a session, `su`, a container without a user bus), as opposed to the unit
/// failing.
pub fn no_user_bus(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    s.contains("failed to connect to bus")
        || s.contains("failed to connect to user scope bus")
        || s.contains("$dbus_session_bus_address and $xdg_runtime_dir not defined")
        || s.contains("no medium found")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Paths {
        super::super::example_paths()
    }

    #[test]
    fn unit_has_real_paths_and_the_promised_settings() {
        let unit = render(&target()).expect("renders");
        for placeholder in ["@BIN@", "@ARGS@", "@DATA_DIR@", "@READ_ONLY@"] {
            assert!(!unit.contains(placeholder), "{placeholder} left in:\n{unit}");
        }
        assert!(unit.contains(
            "ExecStart=\"/opt/spot guard/bin/spotguard\" run --config /home/a/.config/spotguard/config.toml"
        ));
        assert!(unit.contains("BindPaths=/home/a/.local/share/spotguard\n"));
        assert!(
            unit.contains("BindReadOnlyPaths=-/home/a/.config/spotguard \"/opt/spot guard/bin/spotguard\"\n")
        );
        for line in [
            "Type=notify",
            "WatchdogSec=120",
            "Restart=on-failure",
            "StartLimitBurst=5",
            "StartLimitIntervalSec=300",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "PrivateUsers=yes",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=tmpfs",
            "PrivateTmp=yes",
            "MemoryDenyWriteExecute=yes",
            "SystemCallFilter=~@privileged @resources",
            "LimitCORE=0",
            "WantedBy=default.target",
        ] {
            assert!(unit.lines().any(|l| l == line), "missing {line}");
        }
    }

    #[test]
    fn without_a_config_file_no_config_flag() {
        let unit = render(&Paths { config: None, ..target() }).expect("renders");
        assert!(unit.contains("ExecStart=\"/opt/spot guard/bin/spotguard\" run\n"), "{unit}");
    }

    #[test]
    fn a_path_with_a_newline_cannot_inject_a_directive() {
        let t = Paths { data_dir: PathBuf::from("/tmp/x\nExecStartPre=/bin/evil"), ..target() };
        let err = render(&t).expect_err("refused");
        assert!(err.to_string().contains("cannot be written into a service file"), "{err}");
        let t = Paths { binary: PathBuf::from("/opt/100%/spotguard"), ..target() };
        assert!(render(&t).expect("renders").contains("ExecStart=/opt/100%%/spotguard run"));
        for (bad, why) in [
            (Paths { config: Some(PathBuf::from("/a\nExecStartPre=/x/c.toml")), ..target() }, "control"),
            (Paths { config_dir: PathBuf::from("/a\rb"), ..target() }, "control"),
            (Paths { binary: PathBuf::from("/a\u{85}b"), ..target() }, "control"),
            (Paths { data_dir: PathBuf::from("relative/dir"), ..target() }, "not absolute"),
        ] {
            let err = render(&bad).expect_err("refused").to_string();
            assert!(err.contains(why) && !err.contains('\n') && !err.contains('\r'), "{err:?}");
        }
    }

    #[test]
    fn paths_are_quoted_the_way_systemd_reads_each_place() {
        let word = |p: &str, place| unit_word(Path::new(p), place).expect("representable");
        // A bind list reads `:` as source:destination, so such a path is one quoted word.
        assert_eq!(word("/home/a/d:e", Place::Path), "\"/home/a/d:e\"");
        assert_eq!(word("/home/a b", Place::Path), "\"/home/a b\"");
        assert_eq!(word("/home/a\\\"b", Place::Path), "\"/home/a\\\\\\\"b\"");
        // `$` is expanded in arguments only; `%` everywhere.
        assert_eq!(word("/home/$USER/c.toml", Place::Argument), "/home/$$USER/c.toml");
        assert_eq!(word("/home/$USER/spotguard", Place::Path), "/home/$USER/spotguard");
        assert_eq!(word("/home/50%", Place::Argument), "/home/50%%");
        let t = Paths {
            config: Some(PathBuf::from("/home/a/${HOME}/c.toml")),
            data_dir: PathBuf::from("/home/a/x:/etc"),
            ..target()
        };
        let unit = render(&t).expect("renders");
        assert!(unit.contains(" run --config /home/a/$${HOME}/c.toml\n"), "{unit}");
        assert!(unit.contains("BindPaths=\"/home/a/x:/etc\"\n"), "{unit}");
    }

    #[test]
    fn packaged_unit_uses_specifiers_and_the_system_binary() {
        let unit = render_packaged();
        assert!(unit.contains("ExecStart=/usr/bin/spotguard run\n"), "{unit}");
        assert!(unit.contains("BindPaths=%h/.local/share/spotguard\n"));
        assert!(unit.contains("BindReadOnlyPaths=-%E/spotguard\n"));
        let home = Path::new("/home/a");
        let fits = Paths {
            binary: PathBuf::from(PACKAGED_BINARY),
            config: None,
            config_dir: home.join(".config/spotguard"),
            data_dir: home.join(".local/share/spotguard"),
        };
        assert!(packaged_fits(&fits, home, &home.join(".config/spotguard")));
        let elsewhere = Paths { data_dir: PathBuf::from("/srv/spotguard"), ..fits.clone() };
        assert!(!packaged_fits(&elsewhere, home, &home.join(".config/spotguard")));
        let own_build = Paths { binary: PathBuf::from("/home/a/.cargo/bin/spotguard"), ..fits };
        assert!(!packaged_fits(&own_build, home, &home.join(".config/spotguard")));
    }

    #[test]
    fn the_probe_carries_every_sandbox_setting_and_nothing_else() {
        let unit =
            render(&Paths { binary: PathBuf::from("/opt/100%/spotguard"), ..target() }).expect("renders");
        let settings = sandbox_settings(&unit, Path::new("/run/user/1000"));
        assert!(
            settings.contains(
                &"BindReadOnlyPaths=-/run/user/1000/bus -/run/user/1000/systemd/notify -/run/user/1000/systemd/private"
                .to_string()
            ),
            "{settings:?}"
        );
        assert!(
            settings
                .contains(&"BindReadOnlyPaths=-/home/a/.config/spotguard /opt/100%/spotguard".to_string()),
            "{settings:?}"
        );
        assert!(settings.contains(&"PrivateUsers=yes".to_string()), "{settings:?}");
        assert!(settings.contains(&"LimitCORE=0".to_string()));
        assert!(settings.contains(&"SystemCallFilter=~@privileged @resources".to_string()));
        assert!(settings.iter().all(|s| !s.starts_with("ExecStart") && !s.starts_with("Type=")));
        assert!(settings.iter().all(|s| !s.starts_with("WantedBy") && !s.starts_with('#')));
        let cmd = probe_command(
            Profile::Full,
            &settings,
            &["/bin/spotguard".into(), "service".into(), "self-check".into()],
        );
        assert_eq!(cmd[..3], ["systemd-run", "--user", "--wait"]);
        assert!(cmd.iter().any(|w| w.starts_with("--unit=spotguard-probe-full-")), "{cmd:?}");
        assert_eq!(cmd.iter().filter(|w| *w == "-p").count(), settings.len());
        assert_eq!(cmd[cmd.len() - 4..], ["--", "/bin/spotguard", "service", "self-check"]);
    }

    #[test]
    fn reduced_probe_settings_replace_the_namespace_ones_without_empty_assignments() {
        let full = sandbox_settings(&render(&target()).expect("renders"), Path::new("/run/user/1000"));
        let reduced = reduced_settings(&full);
        assert!(reduced.contains(&"PrivateUsers=no".to_string()), "{reduced:?}");
        assert!(!reduced.contains(&"PrivateUsers=yes".to_string()));
        assert!(
            reduced.iter().all(|s| !s.starts_with("BindPaths") && !s.starts_with("CapabilityBoundingSet"))
        );
        assert!(reduced.iter().all(|s| !s.ends_with('=')), "{reduced:?}");
        assert!(reduced.contains(&"SystemCallFilter=~@privileged @resources".to_string()));
        assert!(reduced.contains(&"NoNewPrivileges=yes".to_string()));
    }

    #[test]
    fn reduced_dropin_resets_what_needs_namespaces() {
        let d = reduced_dropin("status=218/CAPABILITIES\nsecond line");
        assert!(d.contains("# Why: status=218/CAPABILITIES second line\n[Service]\n"), "{d}");
        assert!(d.lines().any(|l| l == "PrivateUsers=no"));
        assert!(d.lines().any(|l| l == "ProtectHome=no"));
        assert!(d.lines().any(|l| l == "BindPaths="));
        assert!(!d.contains("SystemCallFilter"), "the seccomp settings stay");
        assert!(!d.contains("NoNewPrivileges"));
    }

    #[test]
    fn session_dropin_quotes_values_and_skips_what_is_missing() {
        assert_eq!(session_dropin(&[("DISPLAY", String::new())]), None);
        let d = session_dropin(&[("DISPLAY", ":0".into()), ("XAUTHORITY", "/home/a b/.Xauthority".into())])
            .expect("some");
        assert!(d.contains("Environment=\"SPOTGUARD_SESSION_DISPLAY=:0\"\n"), "{d}");
        assert!(d.contains("Environment=\"SPOTGUARD_SESSION_XAUTHORITY=/home/a b/.Xauthority\"\n"), "{d}");
        assert_eq!(session_dropin(&[("DISPLAY", ":0\nExecStartPre=/x".into())]), None);
    }

    #[test]
    fn unit_state_reads_systemctl_show() {
        let s = UnitState::parse(
            "ActiveState=failed\nSubState=failed\nResult=exit-code\nExecMainCode=1\nExecMainStatus=218\n\
             NRestarts=4\nStatusText=\n",
        );
        assert_eq!(s.verdict(), Verdict::Failed);
        assert_eq!(s.exit_status().as_deref(), Some("status=218/CAPABILITIES"));
        assert!(s.describe().contains("result exit-code, last exit status=218/CAPABILITIES"));
        let s = UnitState::parse("ActiveState=active\nSubState=running\nResult=success\nExecMainCode=0\n");
        assert_eq!(s.verdict(), Verdict::Running);
        assert_eq!(s.exit_status(), None);
        let s = UnitState::parse("ActiveState=activating\nSubState=auto-restart\nResult=exit-code\n");
        assert_eq!(s.verdict(), Verdict::Failed);
        let s = UnitState::parse("ActiveState=activating\nSubState=start\nResult=success\n");
        assert_eq!(s.verdict(), Verdict::Starting);
        let s = UnitState::parse("ActiveState=failed\nSubState=failed\nResult=start-limit-hit\n");
        assert!(s.describe().contains("stopped retrying"), "{}", s.describe());
        let s = UnitState::parse(
            "ActiveState=failed\nSubState=failed\nResult=signal\nExecMainCode=2\nExecMainStatus=9\n",
        );
        assert_eq!(s.exit_status().as_deref(), Some("signal 9"));
    }

    #[test]
    fn probe_failures_name_the_units_own_status() {
        let stderr = "Running as unit: spotguard-probe-full-7.service\nFinished with result: exit-code\n\
                      Main processes terminated with: code=exited, status=226/NAMESPACE\nService runtime: 22ms\n";
        assert_eq!(probe_failure(Some(1), stderr), "status=226/NAMESPACE");
        assert_eq!(
            probe_failure(Some(1), "Failed to start transient service unit: Access denied\n"),
            "status=1/FAILURE: Failed to start transient service unit: Access denied"
        );
        assert_eq!(
            probe_failure(Some(218), "Running as unit: x.service\nFinished with result: exit-code\n"),
            "status=218/CAPABILITIES, result exit-code"
        );
    }

    #[test]
    fn a_missing_bus_is_told_apart_from_a_failing_unit() {
        assert!(no_user_bus("Failed to connect to bus: No medium found"));
        assert!(no_user_bus(
            "Failed to connect to user scope bus via local transport: $DBUS_SESSION_BUS_ADDRESS and $XDG_RUNTIME_DIR not defined"
        ));
        assert!(!no_user_bus(
            "Created symlink /home/a/.config/systemd/user/default.target.wants/spotguard.service"
        ));
        assert!(!no_user_bus(
            "Job for spotguard.service failed because the control process exited with error code."
        ));
    }
}
