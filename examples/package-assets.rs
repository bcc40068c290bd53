//! Writes what the Debian package ships beside the binary, all generated from the code so it
//! cannot drift: the man page (from the clap definitions, `clap_mangen`), shell completions,
//! and the user unit rendered for `/usr/bin/spotguard`. Used by `scripts/package.sh`:
//!
//! ```sh
//! cargo run --example package-assets -- target/assets
//! ```

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;
use spotguard::cli::Cli;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(std::env::args_os().nth(1).unwrap_or_else(|| "target/assets".into()));
    std::fs::create_dir_all(&dir)?;

    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    std::fs::write(dir.join("spotguard.1"), page)?;

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
