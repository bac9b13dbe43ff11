//! The key broker (issue "The key broker as a real service"): an HTTPS service that challenges
//! a node, appraises its evidence bundle with this crate's appraisal library (never a copy of
//! it), and releases keys wrapped for the appraised instance, boot, owner VMPL, name and nonce
//! (`docs/provisioning.md`). `host-verifier serve` runs it; `docs/broker.md` is the operator's
//! page.
//!
//! What it trusts: the trust anchors it is started with (AMD's pinned roots unless told
//! otherwise), its data directory (keys, token hash) and its database; nothing a client sends
//! is trusted before it is appraised. Replicas are stateless processes over one database:
//!
//! - [`store`]: the shared state (single-use nonces, the highest epoch per instance, policies,
//!   resources, the append-only audit log) on SQLite or PostgreSQL, every race settled by one
//!   conditional statement;
//! - [`secrets`]: secrets at rest, AES-256-GCM under the master key kept outside the database;
//! - [`policy`]: release and attestation policies, compiled into the appraisal's inputs;
//! - [`rounds`], [`reputation`]: continuous attestation — per node the IMA position of its
//!   boot, its reputation and when its next round is due;
//! - [`api`]: the JSON wire types of API version 1; [`service`]: the axum handlers;
//!   [`server`]: TLS and connection handling; [`config`]: the data directory;
//!   [`client`]: a client of the API.

#[cfg(feature = "broker")]
pub mod ak;
pub mod api;
pub mod policy;
pub mod reputation;

#[cfg(feature = "broker-client")]
pub mod client;
#[cfg(feature = "broker")]
pub mod config;
#[cfg(feature = "broker")]
pub mod rounds;
#[cfg(feature = "broker")]
pub mod secrets;
#[cfg(feature = "broker")]
pub mod server;
#[cfg(feature = "broker")]
pub mod service;
#[cfg(feature = "broker")]
pub mod store;

#[cfg(feature = "broker")]
mod run;
#[cfg(feature = "broker")]
pub use run::{start, ServeOptions, StartError};
