//! Helpers shared by spotguard's integration tests.
//!
//! Each integration test file pulls this in with `mod common;` and uses only what it needs.
//! - [`dbus`]: a private `dbus-daemon` session bus and a recording, dunst-like
//!   `org.freedesktop.Notifications` server on it.
//! - [`sandbox`]: a throwaway installation (config, token, database) with the fake Spotify,
//!   and ways to run the built binary in it.
#![allow(dead_code)]

pub mod dbus;
pub mod receiver;
pub mod sandbox;
pub mod smtp;
