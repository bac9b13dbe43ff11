//! `svsm-vault`: the vault from a guest process, over the framed SVSM call channel.

use clap::Parser;
use guest_driver::cli::{run, Cli};
use guest_driver::framed::FramedTransport;
use std::net::TcpStream;
use std::process::ExitCode;

/// Where the simulator places a channel client's driver buffer, and its size (see
/// `svsm-sim tpm-server --guest-port`).
const BUFFER_GPA: u64 = 0x20_0000;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let buffer_len = usize::from(cli.buffer_pages) * 4096;
    let result = match &cli.device {
        Some(path) => match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
        {
            Ok(dev) => run(
                &cli,
                FramedTransport::new(dev, cli.vmpl, BUFFER_GPA, buffer_len),
            ),
            Err(e) => {
                eprintln!(
                    "svsm-vault: cannot open the call channel {}: {e}",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
        },
        None => match TcpStream::connect(&cli.connect) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                run(
                    &cli,
                    FramedTransport::new(stream, cli.vmpl, BUFFER_GPA, buffer_len),
                )
            }
            Err(e) => {
                eprintln!(
                    "svsm-vault: cannot reach the SVSM call channel at {}: {e}",
                    cli.connect
                );
                return ExitCode::FAILURE;
            }
        },
    };
    match result {
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
