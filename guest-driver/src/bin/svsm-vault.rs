//! `svsm-vault`: the vault from a guest process, over the framed SVSM call channel.

use clap::Parser;
use guest_driver::cli::{run, Cli};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.channel.open() {
        Ok(transport) => run(&cli, transport),
        Err(e) => {
            eprintln!("svsm-vault: {e}");
            return ExitCode::FAILURE;
        }
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
