//! spotguard's end-to-end tests, as one test binary: the built `spotguard` binary against the
//! fake Spotify on loopback, a private D-Bus session bus with a notification server, real
//! SQLite files, GNOME Keyring, Chromium and systemd's own tools. One binary instead of nine:
//! axum, reqwest, rustls, zbus and SQLite are linked once, and `common` is compiled once.
//!
//! Run one part with `cargo test --test e2e daemon::` (a module) or a test's name.

mod common;

mod cli;
mod daemon;
mod dbus_harness;
mod desktop;
mod identity;
mod keyring;
mod login;
mod report;
mod service;
