//! The key broker's durable state (issue "The key broker as a real service"): what every broker
//! replica shares through one database, so that any replica can answer any step of a flow.
//! [`store`] owns it: single-use challenge nonces with an expiry, the highest sealed-state epoch
//! seen per instance (so a rolled-back or re-created state is refused, and two concurrent
//! attestations of one instance can neither both move nor regress it), and the append-only
//! audit log of every decision with its reasons. SQLite (a file, the embedded default) and
//! PostgreSQL (by URL, for several replicas) run the same migrations and the same statements.
//!
//! [`secrets`] owns secrets at rest: AES-256-GCM under the broker's master key (kept outside the
//! database), each bound to its resource name.
//!
//! The service in front of them (HTTP API, TLS, release policies) is built on these and on
//! [`crate::bundle_verify`]; it never re-implements a check.

pub mod secrets;
pub mod store;
