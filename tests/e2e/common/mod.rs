//! Helpers shared by spotguard's integration tests.
//!
//! The e2e test binary holds one copy (`tests/e2e/main.rs`); each part uses only what it needs.
//! - [`dbus`]: a private `dbus-daemon` session bus and a recording, dunst-like
//!   `org.freedesktop.Notifications` server on it.
//! - [`sandbox`]: a throwaway installation (config, token, database) with the fake Spotify,
//!   and ways to run the built binary in it.
#![allow(dead_code)] // each part uses only some of the helpers

pub mod dbus;
pub mod receiver;
pub mod sandbox;
pub mod smtp;
