//! `svsm-vault`: the vault from a guest process, over the framed SVSM call channel.

use clap::Parser;
use guest_driver::cli::{run, Cli};
use guest_driver::framed::FramedTransport;
use std::net::TcpStream;
use std::process::ExitCode;

/// Where the simulator places a channel client's driver buffer, and its size (see
/// `svsm-sim tpm-server --guest-port`).
const BUFFER_GPA: u64 = 0x20_0000;
const BUFFER_LEN: usize = 40 * 4096;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stream = match TcpStream::connect(&cli.connect) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "svsm-vault: cannot reach the SVSM call channel at {}: {e}",
                cli.connect
            );
            return ExitCode::FAILURE;
        }
    };
    let _ = stream.set_nodelay(true);
    match run(
        &cli,
        FramedTransport::new(stream, cli.vmpl, BUFFER_GPA, BUFFER_LEN),
    ) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("svsm-vault: {e}");
            ExitCode::FAILURE
        }
    }
}
