//! The broker's database: one schema, the same SQL on SQLite and PostgreSQL (sqlx's `Any`
//! driver), every state change a single conditional statement so that concurrent replicas
//! cannot both win a race: a nonce is redeemed by the one `UPDATE` that finds it unredeemed and
//! unexpired, an epoch moves by the one `UPDATE` that finds it not above the new value.
//!
//! Nothing here trusts its caller's inputs to be well-formed beyond their types; nothing here
//! holds a secret (secrets at rest are encrypted by the service before they reach the store).

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

pub use super::api::{AuditRecord, NodeRecord, NodeRounds};
use std::time::Duration;

/// Bytes of a challenge nonce (the quote's qualifying data holds up to 64).
pub const NONCE_LEN: usize = 32;

/// The schema version this broker migrates to.
pub const SCHEMA_VERSION: usize = 5;

/// The schema, in order; `broker_schema.version` counts how many have run. Portable SQL:
/// `BYTEA` and `BIGINT` mean the same to both engines (SQLite keeps blobs as given).
const MIGRATIONS: [&str; SCHEMA_VERSION] = [
    "CREATE TABLE nonces (
        nonce BYTEA PRIMARY KEY,
        issued_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        redeemed_at BIGINT
    );
    CREATE TABLE instances (
        instance_id BYTEA PRIMARY KEY,
        max_epoch BIGINT NOT NULL,
        first_seen BIGINT NOT NULL,
        last_seen BIGINT NOT NULL
    );
    CREATE TABLE audit (
        id BYTEA PRIMARY KEY,
        at BIGINT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        decision TEXT NOT NULL,
        reasons TEXT NOT NULL
    );
    CREATE INDEX audit_at ON audit (at)",
    // 2: the admin API's policies and resources (secrets sealed by the service), and what the
    // nodes list shows of an instance's last appraisal.
    "CREATE TABLE policies (
        name TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE TABLE resources (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        usage BIGINT NOT NULL,
        policy TEXT NOT NULL,
        sealed BYTEA NOT NULL,
        public_key BYTEA,
        created_at BIGINT NOT NULL
    );
    ALTER TABLE instances ADD COLUMN last_action TEXT;
    ALTER TABLE instances ADD COLUMN last_decision TEXT",
    // 3: audit rows in the order they were written (seconds are too coarse).
    "ALTER TABLE audit ADD COLUMN at_micros BIGINT;
    CREATE INDEX audit_at_micros ON audit (at_micros)",
    // 4: continuous attestation (rounds.rs): runtime policies by name, and per instance its
    // reputation, the IMA position of the boot last appraised and when the next round is due.
    "CREATE TABLE ima_policies (
        name TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    ALTER TABLE instances ADD COLUMN reputation BIGINT;
    ALTER TABLE instances ADD COLUMN trusted BIGINT;
    ALTER TABLE instances ADD COLUMN boot_reset_count BIGINT;
    ALTER TABLE instances ADD COLUMN ima_entries BIGINT;
    ALTER TABLE instances ADD COLUMN ima_pcr10 BYTEA;
    ALTER TABLE instances ADD COLUMN last_round_at BIGINT;
    ALTER TABLE instances ADD COLUMN round_interval BIGINT;
    ALTER TABLE instances ADD COLUMN missed_at BIGINT;
    ALTER TABLE instances ADD COLUMN rounds_good BIGINT;
    ALTER TABLE instances ADD COLUMN rounds_failed BIGINT;
    ALTER TABLE instances ADD COLUMN rounds_missed BIGINT;
    ALTER TABLE instances ADD COLUMN last_failure TEXT;
    ALTER TABLE instances ADD COLUMN round_version BIGINT",
    // 5: a runtime policy is known by the SHA-256 of its body (`migrate` fills it in for
    // older rows), and the IMA position and trust an instance keeps are
    // bound to the runtime policy that appraised them.
    "ALTER TABLE ima_policies ADD COLUMN digest BYTEA;
    ALTER TABLE instances ADD COLUMN round_ima_policy BYTEA",
];

/// The SHA-256 of a runtime policy's stored body.
pub fn ima_policy_digest(body: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(body.as_bytes()).into()
}

fn digest_from(v: Option<Vec<u8>>) -> Result<[u8; 32], StoreError> {
    v.and_then(|d| <[u8; 32]>::try_from(d).ok())
        .ok_or(StoreError::Corrupt("runtime policy digest"))
}

/// Why the store failed (the database, not the evidence).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL names no engine this build supports.
    #[error("database URL must start with sqlite: or postgres:, got a {0:?} URL")]
    UnsupportedUrl(String),
    /// The database answered an error or cannot be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema in the database is newer than this broker.
    #[error("the database schema is version {found}, newer than this broker's {known}")]
    SchemaTooNew {
        /// In the database.
        found: i64,
        /// Known here.
        known: usize,
    },
    /// A stored value does not have the shape this broker writes.
    #[error("stored {0} is malformed")]
    Corrupt(&'static str),
}

/// Why a nonce was not redeemed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NonceRefusal {
    /// No broker issued it.
    #[error("the nonce was not issued by this broker")]
    Unknown,
    /// It was redeemed before.
    #[error("the nonce was already used")]
    Used,
    /// Its time ran out.
    #[error("the nonce expired")]
    Expired,
}

/// The sealed-state facts of one attestation, as the appraised manifest states them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObservedState {
    /// No sealed state was found at boot (epoch counts from a new start).
    Fresh {
        /// The manifest's epoch.
        epoch: u64,
    },
    /// The state was restored at this epoch.
    Restored {
        /// The manifest's epoch.
        epoch: u64,
    },
    /// The module runs on ephemeral state.
    Ephemeral,
}

/// Why an instance's state was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EpochRefusal {
    /// A restored state older than one this broker saw: rolled back.
    #[error("sealed-state epoch {found} is older than {highest}, the highest this broker saw for the instance (rolled back)")]
    RolledBack {
        /// The manifest's epoch.
        found: u64,
        /// The highest seen.
        highest: u64,
    },
    /// A fresh state for a known instance at an epoch below one this broker saw: the state it
    /// had was lost or deleted and the instance id replayed.
    #[error("the instance reports fresh state below epoch {highest}, which this broker saw (state lost or deleted)")]
    FreshAfterKnown {
        /// The highest seen.
        highest: u64,
    },
    /// Ephemeral state: nothing to remember, and nothing a key can be bound to.
    #[error("the module runs on ephemeral state")]
    Ephemeral,
    /// An epoch no real sealed-state counter reaches (above 2^63 - 1).
    #[error("sealed-state epoch {found} is out of range")]
    OutOfRange {
        /// The manifest's epoch.
        found: u64,
    },
}

/// A resource as stored: its secret sealed under the master key ([`super::secrets`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResource {
    /// The name (also the vault key name a release gives it).
    pub name: String,
    /// Key kind, as the admin API names it.
    pub kind: String,
    /// Vault usage bits.
    pub usage: u16,
    /// The policy a release must satisfy.
    pub policy: String,
    /// The secret, sealed.
    pub sealed: Vec<u8>,
    /// The public key of an asymmetric key (SEC1), for relying parties.
    pub public_key: Option<Vec<u8>>,
    /// Unix seconds.
    pub created_at: i64,
}

/// The broker's database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
}

impl Store {
    pub(super) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Connects to `url` (`sqlite:PATH?mode=rwc` creates the file; `postgres://...`) and runs
    /// the migrations not yet applied.
    pub async fn open(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        let store = Store::connect(url, max_connections).await?;
        store.migrate().await?;
        Ok(store)
    }

    async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres:")
            || url.starts_with("postgresql:"))
        {
            // Only the scheme: the rest may hold a password.
            let scheme = url.split(':').next().unwrap_or("").to_owned();
            return Err(StoreError::UnsupportedUrl(scheme));
        }
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // Write-ahead log, synced at checkpoints: a commit survives the
                        // broker's crash (kill -9), and costs no fsync of its own.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            // SQLite (WAL) reads in parallel and serialises writers; a writer waits for the
            // lock (sqlx sets a 5 s busy timeout) and every write is one statement.
            .max_connections(if sqlite { 4 } else { max_connections.max(1) })
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(Store { pool })
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::query("CREATE TABLE IF NOT EXISTS broker_schema (version BIGINT NOT NULL)")
            .execute(&self.pool)
            .await?;
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT version FROM broker_schema")
            .fetch_optional(&mut *tx)
            .await?;
        let version: i64 = match row {
            Some(r) => r.try_get(0)?,
            None => {
                sqlx::query("INSERT INTO broker_schema (version) VALUES (0)")
                    .execute(&mut *tx)
                    .await?;
                0
            }
        };
        let applied =
            usize::try_from(version).map_err(|_| StoreError::Corrupt("schema version"))?;
        if applied > MIGRATIONS.len() {
            return Err(StoreError::SchemaTooNew {
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
            for statement in migration
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                sqlx::query(statement).execute(&mut *tx).await?;
            }
            sqlx::query("UPDATE broker_schema SET version = $1")
                .bind(i64::try_from(i + 1).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
        }
        let unhashed = sqlx::query("SELECT name, body FROM ima_policies WHERE digest IS NULL")
            .fetch_all(&mut *tx)
            .await?;
        for r in &unhashed {
            let (name, body): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            sqlx::query("UPDATE ima_policies SET digest = $1 WHERE name = $2")
                .bind(ima_policy_digest(&body).to_vec())
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The schema version applied.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT version FROM broker_schema")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Records a fresh nonce, valid from `now` for `ttl_secs`.
    pub async fn issue_nonce(
        &self,
        nonce: &[u8; NONCE_LEN],
        now: i64,
        ttl_secs: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO nonces (nonce, issued_at, expires_at) VALUES ($1, $2, $3)")
            .bind(nonce.to_vec())
            .bind(now)
            .bind(now.saturating_add(ttl_secs))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Redeems `nonce` at `now`, once: across every replica on this database exactly one
    /// redemption succeeds. `Ok(Err(_))` says why a nonce was refused.
    pub async fn redeem_nonce(
        &self,
        nonce: &[u8],
        now: i64,
    ) -> Result<Result<(), NonceRefusal>, StoreError> {
        let done = sqlx::query(
            "UPDATE nonces SET redeemed_at = $1
             WHERE nonce = $2 AND redeemed_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(nonce.to_vec())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(Ok(()));
        }
        let row = sqlx::query("SELECT redeemed_at, expires_at FROM nonces WHERE nonce = $1")
            .bind(nonce.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        Ok(Err(match row {
            None => NonceRefusal::Unknown,
            Some(r) => {
                let redeemed: Option<i64> = r.try_get(0)?;
                if redeemed.is_some() {
                    NonceRefusal::Used
                } else {
                    NonceRefusal::Expired
                }
            }
        }))
    }

    /// Deletes nonces that expired before `before` (redeemed or not).
    pub async fn prune_nonces(&self, before: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM nonces WHERE expires_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// The highest epoch seen for `instance`, if any.
    pub async fn highest_epoch(&self, instance: &[u8]) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query("SELECT max_epoch FROM instances WHERE instance_id = $1")
            .bind(instance.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let v: i64 = r.try_get(0)?;
            u64::try_from(v).map_err(|_| StoreError::Corrupt("epoch"))
        })
        .transpose()
    }

    /// Accepts `state` for `instance` and remembers its epoch, or says why it is refused. The
    /// decision and the update are one statement each, so two concurrent observations of one
    /// instance cannot both pass a check the other one invalidates: the first observation of an
    /// instance inserts its row (exactly one of concurrent ones does), every later one moves the
    /// record only if its epoch is not below it.
    /// `action` (`attest`, `release`) is recorded as the instance's last allowed decision,
    /// in the same statement.
    pub async fn observe_state(
        &self,
        instance: &[u8],
        state: ObservedState,
        now: i64,
        action: &str,
    ) -> Result<Result<(), EpochRefusal>, StoreError> {
        let epoch = match state {
            ObservedState::Ephemeral => return Ok(Err(EpochRefusal::Ephemeral)),
            ObservedState::Fresh { epoch } | ObservedState::Restored { epoch } => epoch,
        };
        // The database keeps signed 64-bit integers; a real counter of sealed writes never
        // gets there, and clamping would make every larger epoch look equal.
        let Ok(epoch_db) = i64::try_from(epoch) else {
            return Ok(Err(EpochRefusal::OutOfRange { found: epoch }));
        };
        // One statement: the first observation inserts the row; a later one moves it only if
        // its epoch is not below the record (a fresh state of a known instance is the same
        // boot attesting again after more writes: a fresh boot draws a new random instance
        // id). Zero rows affected means the record is ahead: refused.
        let moved = sqlx::query(
            "INSERT INTO instances
                (instance_id, max_epoch, first_seen, last_seen, last_action, last_decision)
             VALUES ($1, $2, $3, $3, $4, 'allowed')
             ON CONFLICT (instance_id) DO UPDATE
             SET max_epoch = excluded.max_epoch, last_seen = excluded.last_seen,
                 last_action = excluded.last_action, last_decision = 'allowed'
             WHERE instances.max_epoch <= excluded.max_epoch",
        )
        .bind(instance.to_vec())
        .bind(epoch_db)
        .bind(now)
        .bind(action.to_owned())
        .execute(&self.pool)
        .await?;
        if moved.rows_affected() == 1 {
            return Ok(Ok(()));
        }
        let highest = self.highest_epoch(instance).await?.unwrap_or(0);
        Ok(Err(match state {
            ObservedState::Fresh { .. } => EpochRefusal::FreshAfterKnown { highest },
            _ => EpochRefusal::RolledBack {
                found: epoch,
                highest,
            },
        }))
    }

    /// Appends a decision to the audit log.
    pub async fn audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let id: [u8; 16] = rand_id();
        let reasons =
            serde_json::to_string(&record.reasons).map_err(|_| StoreError::Corrupt("reasons"))?;
        sqlx::query(
            "INSERT INTO audit (id, at, action, subject, decision, reasons, at_micros)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.to_vec())
        .bind(record.at)
        .bind(record.action.clone())
        .bind(record.subject.clone())
        .bind(record.decision.clone())
        .bind(reasons)
        .bind(now_micros(record.at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The audit log from `since` (Unix seconds), oldest first, at most `limit` rows.
    pub async fn audit_since(
        &self,
        since: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, action, subject, decision, reasons FROM audit
             WHERE at >= $1 ORDER BY at, at_micros, id LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_row).collect()
    }

    /// Answers whether the database is reachable (`/healthz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Records what the last appraisal of a known instance decided (the nodes list).
    pub async fn note_decision(
        &self,
        instance: &[u8],
        action: &str,
        decision: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE instances SET last_action = $1, last_decision = $2, last_seen = $3
             WHERE instance_id = $4",
        )
        .bind(action.to_owned())
        .bind(decision.to_owned())
        .bind(now)
        .bind(instance.to_vec())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every instance seen, most recently seen first, at most `limit`; trust as of `now`.
    pub async fn nodes(&self, limit: i64, now: i64) -> Result<Vec<NodeRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT instance_id, max_epoch, first_seen, last_seen, last_action, last_decision
             FROM instances ORDER BY last_seen DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut nodes = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: Vec<u8> = r.try_get(0)?;
            let epoch: i64 = r.try_get(1)?;
            let rounds = match self.round_state(&id).await? {
                Some(st) => st.last_round_at.map(|last| NodeRounds {
                    reputation: st.reputation,
                    trusted: st.trusted_at(now),
                    ima_entries: st.ima.map(|p| p.entries),
                    last_round_at: last,
                    overdue_at: st.overdue_at(),
                    good: st.rounds_good,
                    failed: st.rounds_failed,
                    missed: st.rounds_missed,
                    last_failure: st.last_failure.clone(),
                }),
                None => None,
            };
            nodes.push(NodeRecord {
                instance_id: hex::encode(&id),
                max_epoch: u64::try_from(epoch).map_err(|_| StoreError::Corrupt("epoch"))?,
                first_seen: r.try_get(2)?,
                last_seen: r.try_get(3)?,
                last_action: r.try_get(4)?,
                last_decision: r.try_get(5)?,
                rounds,
            });
        }
        Ok(nodes)
    }

    /// Creates or replaces the runtime policy `name` (Keylime's JSON, checked by the caller).
    pub async fn put_ima_policy(
        &self,
        name: &str,
        body: &str,
        now: i64,
    ) -> Result<[u8; 32], StoreError> {
        let digest = ima_policy_digest(body);
        sqlx::query(
            "INSERT INTO ima_policies (name, body, updated_at, digest) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET body = $2, updated_at = $3, digest = $4",
        )
        .bind(name.to_owned())
        .bind(body.to_owned())
        .bind(now)
        .bind(digest.to_vec())
        .execute(&self.pool)
        .await?;
        Ok(digest)
    }

    /// The runtime policy `name` and the SHA-256 of its body.
    pub async fn ima_policy(&self, name: &str) -> Result<Option<(String, [u8; 32])>, StoreError> {
        let row = sqlx::query("SELECT body, digest FROM ima_policies WHERE name = $1")
            .bind(name.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get(0)?, digest_from(r.try_get(1)?)?)))
            .transpose()
    }

    /// The SHA-256 of the runtime policy `name` (what appraisals and kept IMA positions are
    /// bound to, and the cache key), if it exists.
    pub async fn ima_policy_digest(&self, name: &str) -> Result<Option<[u8; 32]>, StoreError> {
        let row = sqlx::query("SELECT digest FROM ima_policies WHERE name = $1")
            .bind(name.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| digest_from(r.try_get(0)?)).transpose()
    }

    /// Names of the runtime policies, when each was last written, and its SHA-256.
    pub async fn ima_policies(&self) -> Result<Vec<(String, i64, [u8; 32])>, StoreError> {
        let rows = sqlx::query("SELECT name, updated_at, digest FROM ima_policies ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, digest_from(r.try_get(2)?)?)))
            .collect()
    }

    /// Deletes the runtime policy `name`; false if there was none. The caller checks that no
    /// policy names it.
    pub async fn delete_ima_policy(&self, name: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("DELETE FROM ima_policies WHERE name = $1")
            .bind(name.to_owned())
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1)
    }

    /// Creates or replaces the policy `name`.
    pub async fn put_policy(&self, name: &str, body: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO policies (name, body, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET body = $2, updated_at = $3",
        )
        .bind(name.to_owned())
        .bind(body.to_owned())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The policy `name`, as stored.
    pub async fn policy(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT body FROM policies WHERE name = $1")
            .bind(name.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get(0).map_err(StoreError::from))
            .transpose()
    }

    /// Every policy: name and body.
    pub async fn policies(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT name, body FROM policies ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Deletes the policy `name` unless a resource uses it; `Ok(false)` if there was none.
    pub async fn delete_policy(&self, name: &str) -> Result<Result<bool, String>, StoreError> {
        let user = sqlx::query("SELECT name FROM resources WHERE policy = $1 LIMIT 1")
            .bind(name.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        if let Some(r) = user {
            return Ok(Err(r.try_get(0)?));
        }
        let done = sqlx::query("DELETE FROM policies WHERE name = $1")
            .bind(name.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(Ok(done.rows_affected() == 1))
    }

    /// Creates the resource; `Ok(false)` if one of that name exists (resources are immutable:
    /// a released key must not change under its name).
    pub async fn insert_resource(&self, r: &StoredResource) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO resources (name, kind, usage, policy, sealed, public_key, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING",
        )
        .bind(r.name.clone())
        .bind(r.kind.clone())
        .bind(i64::from(r.usage))
        .bind(r.policy.clone())
        .bind(r.sealed.clone())
        .bind(r.public_key.clone())
        .bind(r.created_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Points the resource `name` at another policy; `Ok(false)` if there is no such resource.
    pub async fn set_resource_policy(&self, name: &str, policy: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE resources SET policy = $1 WHERE name = $2")
            .bind(policy.to_owned())
            .bind(name.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The resource `name`.
    pub async fn resource(&self, name: &str) -> Result<Option<StoredResource>, StoreError> {
        let row = sqlx::query(
            "SELECT name, kind, usage, policy, sealed, public_key, created_at
             FROM resources WHERE name = $1",
        )
        .bind(name.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(resource_row).transpose()
    }

    /// The resource `name` and the body of its policy, in one query (the release path).
    pub async fn resource_with_policy(
        &self,
        name: &str,
    ) -> Result<Option<(StoredResource, Option<String>)>, StoreError> {
        let row = sqlx::query(
            "SELECT r.name, r.kind, r.usage, r.policy, r.sealed, r.public_key, r.created_at,
                    p.body
             FROM resources r LEFT JOIN policies p ON p.name = r.policy WHERE r.name = $1",
        )
        .bind(name.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((resource_row(&r)?, r.try_get(7)?)))
            .transpose()
    }

    /// Every resource (sealed secrets included: callers show only the metadata).
    pub async fn resources(&self) -> Result<Vec<StoredResource>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, kind, usage, policy, sealed, public_key, created_at
             FROM resources ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(resource_row).collect()
    }

    /// Deletes the resource `name`; `Ok(false)` if there was none.
    pub async fn delete_resource(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM resources WHERE name = $1")
            .bind(name.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Drops every table of the database at `url` without migrating it first (tests start
    /// from an empty database on a shared server).
    #[doc(hidden)]
    pub async fn reset_for_tests(url: &str) -> Result<(), StoreError> {
        let store = Store::connect(url, 1).await?;
        for table in [
            "nonces",
            "instances",
            "audit",
            "policies",
            "resources",
            "ima_policies",
            "broker_schema",
        ] {
            sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
                .execute(&store.pool)
                .await?;
        }
        store.close().await;
        Ok(())
    }

    /// Sets the recorded schema version (tests of the newer-schema refusal).
    #[doc(hidden)]
    pub async fn set_schema_version_for_tests(&self, version: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE broker_schema SET version = $1")
            .bind(version)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn audit_row(r: &AnyRow) -> Result<AuditRecord, StoreError> {
    let reasons: String = r.try_get(4)?;
    Ok(AuditRecord {
        at: r.try_get(0)?,
        action: r.try_get(1)?,
        subject: r.try_get(2)?,
        decision: r.try_get(3)?,
        reasons: serde_json::from_str(&reasons)
            .map_err(|_| StoreError::Corrupt("audit reasons"))?,
    })
}

fn resource_row(r: &AnyRow) -> Result<StoredResource, StoreError> {
    let usage: i64 = r.try_get(2)?;
    Ok(StoredResource {
        name: r.try_get(0)?,
        kind: r.try_get(1)?,
        usage: u16::try_from(usage).map_err(|_| StoreError::Corrupt("resource usage"))?,
        policy: r.try_get(3)?,
        sealed: r.try_get(4)?,
        public_key: r.try_get(5)?,
        created_at: r.try_get(6)?,
    })
}

/// Microseconds for the audit order: the wall clock when it agrees with the record's second,
/// else the record's second (records written with an explicit time, as in tests).
fn now_micros(at: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    if now / 1_000_000 == at {
        now
    } else {
        at.saturating_mul(1_000_000)
    }
}

fn rand_id() -> [u8; 16] {
    use rand_core::RngCore;
    let mut id = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut id);
    id
}
