//! Writes what the Debian package ships beside the binary, all generated from the code so it
//! cannot drift: the man pages (from the clap definitions, `clap_mangen`), shell completions,
//! and the user unit rendered for `/usr/bin/spotguard`. Used by `scripts/package.sh`:
//!
//! ```sh
//! cargo run --example package-assets -- target/assets
//! ```

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;
use spotguard::cli::Cli;

/// The page of `cmd` as `name`, then of each visible subcommand as `name-sub`, recursively.
fn write_pages(dir: &std::path::Path, cmd: clap::Command, name: &'static str) -> std::io::Result<()> {
    let cmd = cmd.name(name);
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    std::fs::write(dir.join(format!("{name}.1")), page)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // clap names are &'static str without its `string` feature; this runs once per build.
        let sub_name: &'static str = Box::leak(format!("{name}-{}", sub.get_name()).into_boxed_str());
        write_pages(dir, sub.clone(), sub_name)?;
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(std::env::args_os().nth(1).unwrap_or_else(|| "target/assets".into()));
    std::fs::create_dir_all(&dir)?;

    // spotguard(1), and a page for each subcommand it refers to (spotguard-run(1),
    // spotguard-service-install(1), ...).
    let man = dir.join("man");
    std::fs::create_dir_all(&man)?;
    write_pages(&man, Cli::command(), "spotguard")?;

    for (shell, file) in
        [(Shell::Bash, "spotguard.bash"), (Shell::Zsh, "_spotguard"), (Shell::Fish, "spotguard.fish")]
    {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "spotguard", &mut out);
        std::fs::write(dir.join(file), out)?;
    }

    std::fs::write(dir.join("spotguard.service"), spotguard::service::systemd::render_packaged())?;
    eprintln!("package assets written to {}", dir.display());
    Ok(())
}
