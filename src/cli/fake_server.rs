//! `spotguard fake-spotify` (hidden): the fake Web API as a process, for the benchmark.

use std::net::SocketAddr;
use std::process::ExitCode;

use crate::fake::FakeSpotify;

#[derive(Debug, clap::Args)]
pub struct Cmd {
    /// Loopback address to listen on
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// An access token the fake accepts (repeatable)
    #[arg(long = "token")]
    tokens: Vec<String>,
}

impl Cmd {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let fake = FakeSpotify::start_on(self.listen).await?;
        let handle = fake.handle();
        for t in &self.tokens {
            handle.add_token(t);
        }
        // Scripts read this line to find the fake.
        println!("api_base={}", fake.api_base());
        super::run::shutdown_signal().await;
        fake.stop().await;
        Ok(ExitCode::SUCCESS)
    }
}
