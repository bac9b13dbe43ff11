//! `svsm-vault`: the vault from a guest process, over the framed SVSM call channel. A key
//! given as `name:NAME` that the vault does not hold is provisioned through the guest agent
//! first (`--agent`), with the call channel closed meanwhile: the agent uses it.

use clap::Parser;
use guest_driver::cli::{find_named, run, Cli, CliError, KeyRef};
use guest_driver::vault::VaultClient;
use std::process::ExitCode;

/// Asks the agent for a named key the vault does not hold.
fn provision_if_missing(cli: &Cli) -> Result<(), String> {
    let Some(KeyRef::Name(name)) = cli.command.key() else {
        return Ok(());
    };
    let held = {
        let transport = cli
            .channel
            .open_vault(cli.tpm.as_deref())
            .map_err(|e| e.to_string())?;
        let mut vault = VaultClient::probe(transport).map_err(|e| e.to_string())?;
        find_named(&mut vault, name).map_err(|e| e.to_string())?
    };
    if held.is_some() {
        return Ok(());
    }
    guest_driver::agent_socket::ask_provision(&cli.agent, name)
        .map(|_| ())
        .map_err(|e| {
            CliError::NoSuchName {
                name: name.clone(),
                why: format!(", and {e}"),
            }
            .to_string()
        })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = provision_if_missing(&cli) {
        eprintln!("svsm-vault: {e}");
        return ExitCode::FAILURE;
    }
    let result = match cli.channel.open_vault(cli.tpm.as_deref()) {
        Ok(transport) => run(&cli, transport),
        Err(e) => {
            eprintln!("svsm-vault: {e}");
            return ExitCode::FAILURE;
        }
    };
    match result {
        Ok(out) => {
            // `reveal --out -` wrote raw bytes and has nothing to add.
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("svsm-vault: {e}");
            ExitCode::FAILURE
        }
    }
}
