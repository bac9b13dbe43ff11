//! The broker's HTTP service (axum): the versioned API of [`super::api`] over [`super::store`],
//! [`super::secrets`] and [`crate::bundle_verify`]. Every replica is stateless: a nonce, an
//! instance's epoch, a policy, a resource and an audit row live in the database only, so any
//! replica answers any step of a flow.
//!
//! Order of a release (each refusal is audited with its reasons before it is answered):
//! decode the request strictly → find the resource and its policy → redeem the bundle's nonce
//! (once, across replicas) → appraise the bundle with the policy (on a blocking thread) →
//! accept the sealed-state epoch (never backwards) → open the secret and wrap it for the
//! appraised manifest's instance, boot, owner VMPL, name and nonce → audit → answer. A broker
//! killed at any point has either audited a release or released nothing.

use super::api::{self, ErrorBody, FailedCheck};
use super::policy::{CompiledPolicy, PolicyDocument};
use super::reputation::RoundEvent;
use super::rounds::{RoundResult, RoundState};
use super::secrets::MasterKey;
use super::store::{AuditRecord, ObservedState, Store, StoreError, StoredResource};
use crate::bundle_verify::tpm::QuoteAttest;
use crate::bundle_verify::{verify_bundle, BundleAppraisal, BundleCheckId, BundleContext};
use crate::measured::ima_rounds::ImaPosition;
use crate::measured::runtime_policy::{RuntimePolicy, RuntimePolicyDocument};
use crate::{TrustStore, Verifier};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;
use svsm_abi::attest::{StateKind, VtpmManifest};
use svsm_abi::vault::{valid_key_name, KeyKind, Usage};
use svsm_evidence::{Bundle, BundleJson};
use zeroize::Zeroizing;

/// The policy `attest` uses when the request names none.
pub const DEFAULT_POLICY: &str = "default";

/// How the service behaves (the data directory's files are read by the caller).
pub struct ServiceConfig {
    /// The database.
    pub store: Store,
    /// Seals secrets at rest.
    pub master_key: MasterKey,
    /// The EAR signing key, P-256 PKCS#8 PEM.
    pub ear_key_pem: Zeroizing<Vec<u8>>,
    /// SHA-256 of the admin bearer token.
    pub admin_token_sha256: [u8; 32],
    /// The roots SNP reports must chain to.
    pub trust: Arc<TrustStore>,
    /// How long a nonce is valid.
    pub nonce_ttl: Duration,
    /// Largest request body.
    pub max_body: usize,
    /// The longest a request may take, body included.
    pub request_timeout: Duration,
    /// A DER CRL from AMD's KDS: revoked ASKs and VCEKs are refused.
    pub crl: Option<Vec<u8>>,
    /// How often overdue rounds are looked for ([`Service::sweeper`]).
    pub round_sweep: Duration,
    /// The CA of the AK certificates (`/v1/ak/*`).
    pub ak_ca: Arc<super::ak::AkCa>,
}

/// The service: its router, and the background task that counts missed rounds (run it on the
/// same runtime; every replica may, the store counts each miss once).
pub struct Service {
    /// The HTTP routes.
    pub router: Router,
    /// Counts missed rounds every `round_sweep` and updates the node gauges.
    pub sweeper: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

/// Why the service could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The EAR key is not a P-256 PKCS#8 PEM key.
    #[error("the EAR signing key is not a P-256 PKCS#8 PEM private key")]
    EarKey,
    /// The metrics registry refused a metric.
    #[error("metrics: {0}")]
    Metrics(String),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    action: String,
    decision: String,
}

struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram>,
    decisions: Family<DecisionLabels, Counter>,
    database_unavailable: Counter,
    rounds: Family<RoundLabels, Counter>,
    nodes: Family<TrustLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoundLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrustLabels {
    trust: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ])
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("broker");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let decisions = Family::<DecisionLabels, Counter>::default();
        let database_unavailable = Counter::default();
        registry.register(
            "requests",
            "HTTP requests by endpoint and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "HTTP request latency by endpoint",
            latency.clone(),
        );
        registry.register(
            "decisions",
            "Audited decisions by action and outcome",
            decisions.clone(),
        );
        registry.register(
            "database_unavailable",
            "Requests answered 503 because the database could not be reached",
            database_unavailable.clone(),
        );
        let rounds = Family::<RoundLabels, Counter>::default();
        registry.register(
            "rounds",
            "Rounds of continuous attestation by outcome (good, failed, missed)",
            rounds.clone(),
        );
        let nodes = Family::<TrustLabels, Gauge>::default();
        registry.register(
            "nodes",
            "Nodes under continuous attestation by trust (trusted, untrusted), as of the last sweep",
            nodes.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            decisions,
            database_unavailable,
            rounds,
            nodes,
        }
    }
}

/// Verifiers kept per SNP policy text: a verifier caches each VEK's parsed certificate and
/// precomputed key tables, which a fresh one would rebuild for every request.
const VERIFIER_CACHE_LIMIT: usize = 32;

struct Shared {
    /// At most one appraisal per core at a time: more only adds context switches (requests
    /// wait their turn in async code instead, holding no thread).
    appraisals: tokio::sync::Semaphore,
    verifiers: std::sync::Mutex<std::collections::HashMap<String, Arc<Verifier>>>,
    store: Store,
    master_key: MasterKey,
    ear_key_pem: Zeroizing<Vec<u8>>,
    ear_jwk: serde_json::Value,
    admin_token_sha256: [u8; 32],
    trust: Arc<TrustStore>,
    crl: Option<Arc<Vec<u8>>>,
    nonce_ttl_secs: i64,
    metrics: Metrics,
    /// Compiled runtime policies by name, with the SHA-256 of the body they were compiled from.
    runtime_policies: std::sync::Mutex<std::collections::HashMap<String, CompiledRuntime>>,
    ak_ca: Arc<super::ak::AkCa>,
    ak_challenges: super::ak::PendingChallenges,
}

type AppState = Arc<Shared>;

/// Builds the service: public API, admin API, `/healthz`, `/metrics`, and the missed-round
/// sweeper.
pub fn build(config: ServiceConfig) -> Result<Service, ServiceError> {
    let pem = std::str::from_utf8(&config.ear_key_pem).map_err(|_| ServiceError::EarKey)?;
    let secret = {
        use p256::pkcs8::DecodePrivateKey;
        p256::SecretKey::from_pkcs8_pem(pem).map_err(|_| ServiceError::EarKey)?
    };
    let ear_jwk = serde_json::from_str(&secret.public_key().to_jwk_string())
        .map_err(|_| ServiceError::EarKey)?;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let shared = Arc::new(Shared {
        appraisals: tokio::sync::Semaphore::new(cores),
        verifiers: std::sync::Mutex::new(std::collections::HashMap::new()),
        store: config.store,
        master_key: config.master_key,
        ear_key_pem: config.ear_key_pem,
        ear_jwk,
        admin_token_sha256: config.admin_token_sha256,
        trust: config.trust,
        crl: config.crl.map(Arc::new),
        nonce_ttl_secs: i64::try_from(config.nonce_ttl.as_secs()).unwrap_or(i64::MAX),
        metrics: Metrics::new(),
        runtime_policies: std::sync::Mutex::new(std::collections::HashMap::new()),
        ak_ca: config.ak_ca,
        ak_challenges: super::ak::PendingChallenges::default(),
    });
    let sweeper = Box::pin(sweep_rounds(shared.clone(), config.round_sweep));
    let admin = Router::new()
        .route("/policies", get(list_policies))
        .route(
            "/policies/{name}",
            get(get_policy).put(put_policy).delete(delete_policy),
        )
        .route("/resources", get(list_resources))
        .route(
            "/resources/{name}",
            get(get_resource)
                .put(put_resource)
                .patch(patch_resource)
                .delete(delete_resource),
        )
        .route("/ima-policies", get(list_ima_policies))
        .route(
            "/ima-policies/{name}",
            get(get_ima_policy)
                .put(put_ima_policy)
                .delete(delete_ima_policy),
        )
        .route("/nodes", get(list_nodes))
        .route("/audit", get(read_audit))
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            require_admin,
        ));
    let api = Router::new()
        .route("/challenge", post(challenge))
        .route("/attest", post(attest))
        .route("/release", post(release))
        .route("/ear-key", get(ear_key))
        .route("/ak/challenge", post(ak_challenge))
        .route("/ak/certificate", post(ak_certificate))
        .route("/ak-ca", get(ak_ca))
        .nest("/admin", admin);
    let router = Router::new()
        .nest(api::PREFIX, api)
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Innermost first: the deadline covers the handler and reading the body; `measure`
        // sees every answer, a timeout's 408 included.
        .layer(axum::middleware::from_fn_with_state(
            config.request_timeout,
            deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            measure,
        ))
        .layer(DefaultBodyLimit::max(config.max_body))
        .with_state(shared);
    Ok(Service { router, sweeper })
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Every answer that is not a success.
#[derive(Debug)]
enum ApiError {
    Malformed {
        field: Option<String>,
        message: String,
    },
    TooLarge,
    Unauthorized,
    NotFound(String),
    Conflict(String),
    Refused {
        message: String,
        failed: Vec<FailedCheck>,
    },
    Unavailable,
    Timeout,
    MethodNotAllowed,
    Internal(&'static str),
}

impl ApiError {
    fn malformed(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::Malformed {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }
}

/// Whether a database error means "cannot reach it now" (503, retry) rather than a bug.
fn unreachable_database(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        // PostgreSQL SQLSTATE classes 08 (connection exception), 53 (insufficient resources:
        // too many connections, disk full) and 57 (operator intervention: shutting down).
        // SQLite reports extended result codes: the primary code is the low byte, and BUSY
        // (5), LOCKED (6), IOERR (10), FULL (13) and CANTOPEN (14) mean "not now".
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            c.starts_with("08")
                || c.starts_with("53")
                || c.starts_with("57")
                || c.parse::<i64>()
                    .is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 10 | 13 | 14))
        }),
        _ => false,
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match &e {
            StoreError::Database(d) if unreachable_database(d) => {
                tracing::warn!(error = %d, "database unavailable");
                ApiError::Unavailable
            }
            _ => {
                tracing::error!(error = %e, "database error");
                ApiError::Internal("database error")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::Malformed { field, message } => (
                StatusCode::BAD_REQUEST,
                ErrorBody {
                    error: "malformed".into(),
                    message,
                    field,
                    failed_checks: vec![],
                },
            ),
            ApiError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorBody {
                    error: "too_large".into(),
                    message: "the request body exceeds the broker's limit".into(),
                    field: None,
                    failed_checks: vec![],
                },
            ),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                ErrorBody {
                    error: "unauthorized".into(),
                    message: "the admin API needs `Authorization: Bearer <admin token>`".into(),
                    field: None,
                    failed_checks: vec![],
                },
            ),
            ApiError::NotFound(message) => (
                StatusCode::NOT_FOUND,
                ErrorBody {
                    error: "not_found".into(),
                    message,
                    field: None,
                    failed_checks: vec![],
                },
            ),
            ApiError::Conflict(message) => (
                StatusCode::CONFLICT,
                ErrorBody {
                    error: "conflict".into(),
                    message,
                    field: None,
                    failed_checks: vec![],
                },
            ),
            ApiError::Refused { message, failed } => (
                StatusCode::FORBIDDEN,
                ErrorBody {
                    error: "refused".into(),
                    message,
                    field: None,
                    failed_checks: failed,
                },
            ),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorBody {
                    error: "unavailable".into(),
                    message: "the broker's database cannot be reached; retry".into(),
                    field: None,
                    failed_checks: vec![],
                },
            ),
            ApiError::Timeout => (
                StatusCode::REQUEST_TIMEOUT,
                ErrorBody {
                    error: "timeout".into(),
                    message: "the request took longer than the broker allows".into(),
                    field: None,
                    failed_checks: vec![],
                },
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorBody {
                    error: "method_not_allowed".into(),
                    message: "this endpoint does not take that method (see docs/broker.md)".into(),
                    field: None,
                    failed_checks: vec![],
                },
            ),
            ApiError::Internal(what) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorBody {
                    error: "internal".into(),
                    message: what.into(),
                    field: None,
                    failed_checks: vec![],
                },
            ),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

/// A JSON body decoded strictly: unknown fields refused, the offending field named, the body
/// limit answered 413.
struct StrictJson<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for StrictJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::Malformed {
                    field: None,
                    message: e.body_text(),
                }
            }
        })?;
        let value = api::decode_request(&bytes).map_err(|e| ApiError::Malformed {
            field: e.field,
            message: e.message,
        })?;
        Ok(StrictJson(value))
    }
}

// ---------------------------------------------------------------------------------------------
// Middleware

async fn measure(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    s.metrics
        .latency
        .get_or_create(&EndpointLabels {
            endpoint: endpoint.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    s.metrics
        .requests
        .get_or_create(&RequestLabels { endpoint, status })
        .inc();
    if status == 503 {
        s.metrics.database_unavailable.inc();
    }
    response
}

/// Answers 408 when a request (reading its body included) outlives `limit`.
async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

async fn require_admin(
    State(s): State<AppState>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| super::config::token_hash(t.trim()));
    let ok = presented.is_some_and(|h| bool::from(h.ct_eq(&s.admin_token_sha256)));
    if !ok {
        let path = req
            .extensions()
            .get::<axum::extract::OriginalUri>()
            .map(|u| u.path().to_owned())
            .unwrap_or_else(|| req.uri().path().to_owned());
        if let Err(e) = audit(
            &s,
            "admin",
            &path,
            "refused",
            vec!["wrong or missing admin credentials".into()],
        )
        .await
        {
            return e.into_response();
        }
        return ApiError::Unauthorized.into_response();
    }
    next.run(req).await
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

async fn audit(
    s: &Shared,
    action: &str,
    subject: &str,
    decision: &str,
    reasons: Vec<String>,
) -> Result<(), ApiError> {
    s.store
        .audit(&AuditRecord {
            at: now(),
            action: action.to_owned(),
            subject: subject.to_owned(),
            decision: decision.to_owned(),
            reasons,
        })
        .await?;
    s.metrics
        .decisions
        .get_or_create(&DecisionLabels {
            action: action.to_owned(),
            decision: decision.to_owned(),
        })
        .inc();
    Ok(())
}

fn check(check: &str, reason: impl Into<String>) -> FailedCheck {
    FailedCheck {
        check: check.to_owned(),
        reason: reason.into(),
    }
}

fn reasons(failed: &[FailedCheck]) -> Vec<String> {
    failed
        .iter()
        .map(|f| format!("{}: {}", f.check, f.reason))
        .collect()
}

fn decode_bundle(json: BundleJson) -> Result<Bundle, ApiError> {
    Bundle::from_parsed(json).map_err(|e| ApiError::malformed("bundle", e.to_string()))
}

/// A compiled runtime policy and the SHA-256 of the body it was compiled from.
type CompiledRuntime = ([u8; 32], Arc<RuntimePolicy>);

/// A policy ready to apply, the verifier of its SNP part, and its runtime policy.
struct Loaded {
    policy: CompiledPolicy,
    verifier: Arc<Verifier>,
    runtime: Option<Arc<RuntimePolicy>>,
    /// SHA-256 of the runtime policy's stored body (what rounds are bound to).
    runtime_digest: Option<[u8; 32]>,
}

fn compile_policy(
    s: &Shared,
    name: &str,
    body: &str,
    for_release: bool,
) -> Result<Loaded, ApiError> {
    let doc = PolicyDocument::from_json(body).map_err(|e| {
        tracing::error!(policy = name, error = %e, "stored policy does not parse");
        ApiError::Internal("a stored policy does not parse")
    })?;
    let policy = doc.compile(for_release).map_err(|e| {
        tracing::error!(policy = name, error = %e, "stored policy does not compile");
        ApiError::Internal("a stored policy does not compile")
    })?;
    let key = serde_json::to_string(&doc.snp).map_err(|_| ApiError::Internal("policy"))?;
    let mut verifiers = s
        .verifiers
        .lock()
        .map_err(|_| ApiError::Internal("verifier cache"))?;
    if verifiers.len() >= VERIFIER_CACHE_LIMIT && !verifiers.contains_key(&key) {
        verifiers.clear();
    }
    let verifier = verifiers
        .entry(key)
        .or_insert_with(|| {
            Arc::new(Verifier::with_trust_store(
                s.trust.clone(),
                policy.snp.clone(),
            ))
        })
        .clone();
    Ok(Loaded {
        policy,
        verifier,
        runtime: None,
        runtime_digest: None,
    })
}

/// Loads (compiled once per change, on a blocking thread: a large one takes tens of
/// milliseconds) the runtime policy a policy names.
async fn load_runtime_policy(s: &Shared, loaded: &mut Loaded) -> Result<(), ApiError> {
    let Some(name) = loaded.policy.ima_policy.clone() else {
        return Ok(());
    };
    let Some(digest) = s.store.ima_policy_digest(&name).await? else {
        // Deleting a runtime policy in use is refused; this is a race with an admin change.
        tracing::error!(ima_policy = %name, "a policy names a runtime policy that is missing");
        return Err(ApiError::Internal("the policy's runtime policy is missing"));
    };
    let cached = s
        .runtime_policies
        .lock()
        .map_err(|_| ApiError::Internal("runtime policy cache"))?
        .get(&name)
        .filter(|(d, _)| *d == digest)
        .map(|(_, p)| p.clone());
    if let Some(p) = cached {
        loaded.runtime = Some(p);
        loaded.runtime_digest = Some(digest);
        return Ok(());
    }
    let (body, digest) = s
        .store
        .ima_policy(&name)
        .await?
        .ok_or(ApiError::Internal("the policy's runtime policy is missing"))?;
    let compiled = tokio::task::spawn_blocking(move || RuntimePolicy::from_json(body.as_bytes()))
        .await
        .map_err(|_| ApiError::Internal("the runtime policy task failed"))?
        .map_err(|e| {
            tracing::error!(ima_policy = %name, error = %e, "stored runtime policy does not compile");
            ApiError::Internal("a stored runtime policy does not compile")
        })?;
    let compiled = Arc::new(compiled);
    let mut cache = s
        .runtime_policies
        .lock()
        .map_err(|_| ApiError::Internal("runtime policy cache"))?;
    if cache.len() >= VERIFIER_CACHE_LIMIT && !cache.contains_key(&name) {
        cache.clear();
    }
    cache.insert(name, (digest, compiled.clone()));
    loaded.runtime = Some(compiled);
    loaded.runtime_digest = Some(digest);
    Ok(())
}

/// What the bundle claims, before the appraisal checks it: the manifest's instance and the
/// quote's resetCount (the boot). Used only to pick the IMA position to continue from; the
/// appraisal then verifies both.
fn claimed_node(bundle: &Bundle) -> Option<([u8; 16], u32)> {
    let manifest = VtpmManifest::parse(&bundle.manifest).ok()?;
    let quote = QuoteAttest::parse(&bundle.quote_attest).ok()?;
    Some((*manifest.module.instance_id, quote.reset_count))
}

/// The node's round state and the IMA position its bundle continues from under the runtime
/// policy with SHA-256 `runtime` (the start for a node, boot or runtime policy not seen before).
async fn kept_position(
    s: &Shared,
    bundle: &Bundle,
    runtime: Option<&[u8; 32]>,
) -> Result<(Option<RoundState>, ImaPosition), ApiError> {
    let Some((instance, boot)) = claimed_node(bundle) else {
        return Ok((None, ImaPosition::START));
    };
    let state = s.store.round_state(&instance).await?;
    let position = match (&state, runtime) {
        (Some(st), Some(digest)) => st.ima_position_for(boot, digest),
        _ => ImaPosition::START,
    };
    Ok((state, position))
}

/// The evidence is this node's own: every signature from the AMD chain to the quote verified
/// and bound to this nonce. Only then may a failed round count against the node it names.
fn authentic(appraisal: &BundleAppraisal) -> bool {
    [
        BundleCheckId::CpuSnp,
        BundleCheckId::SvsmBinding,
        BundleCheckId::SvsmVmpl,
        BundleCheckId::SvsmManifest,
        BundleCheckId::SvsmNonce,
        BundleCheckId::VtpmQuoteSignature,
        BundleCheckId::VtpmQuoteNonce,
        BundleCheckId::VtpmPcrDigest,
    ]
    .iter()
    .all(|id| {
        matches!(
            appraisal.check(*id).map(|c| &c.outcome),
            Some(crate::Outcome::Pass)
        )
    })
}

/// Records a round of `instance`, counts it in the metrics, and says what the node's agent
/// needs for the next one.
async fn record_round(
    s: &Shared,
    instance: &[u8; 16],
    bundle: &Bundle,
    appraisal: &BundleAppraisal,
    failed: &[FailedCheck],
    base_interval: u64,
    runtime: [u8; 32],
) -> Result<Option<api::RoundInfo>, ApiError> {
    let boot = QuoteAttest::parse(&bundle.quote_attest)
        .ok()
        .map(|q| q.reset_count);
    let position = appraisal.ima_log.as_ref().and_then(|i| i.position);
    let result = match (failed.is_empty(), boot, position) {
        (true, Some(boot), Some(ima)) => RoundResult::Good {
            boot,
            ima,
            ima_policy: runtime,
        },
        _ => RoundResult::Failed {
            event: if failed.iter().any(|f| f.check == "broker.epoch") {
                RoundEvent::RolledBack
            } else {
                RoundEvent::Failed
            },
            why: failed
                .iter()
                .map(|f| f.check.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        },
    };
    let outcome = if matches!(result, RoundResult::Good { .. }) {
        "good"
    } else {
        "failed"
    };
    let Some(state) = s
        .store
        .record_round(instance, &result, base_interval, now())
        .await?
    else {
        return Ok(None);
    };
    s.metrics
        .rounds
        .get_or_create(&RoundLabels {
            outcome: outcome.into(),
        })
        .inc();
    Ok(Some(api::RoundInfo {
        // The position of the boot this round quoted (a failed first round of a new boot must
        // not hand back the previous boot's count).
        ima_offset: boot.map_or(0, |b| state.ima_position_for(b, &runtime).entries),
        next_round_in_s: state.interval.unwrap_or(base_interval),
        reputation: state.reputation,
        trusted: state.trusted,
    }))
}

/// What a release's `min_reputation` check compares the node's rounds with: the boot its
/// (verified) quote is from and the runtime policy the release's policy names.
struct TrustQuery<'a> {
    min: u32,
    at: i64,
    boot: Option<u32>,
    runtime: Option<&'a [u8; 32]>,
}

/// A release policy's `min_reputation`: the node's last round was good, of this boot, under
/// the runtime policy this release names (if it names one), its next is not overdue, and its
/// reputation is high enough; the failed check otherwise.
fn node_trust(state: Option<&RoundState>, q: &TrustQuery<'_>) -> Option<FailedCheck> {
    let min = q.min;
    let reason = match state {
        None => "the node has had no round of continuous attestation".to_owned(),
        Some(st) if st.last_round_at.is_none() => {
            "the node has had no round of continuous attestation".to_owned()
        }
        Some(st) if st.trusted && q.boot.is_some() && st.boot != q.boot => format!(
            "the node has had no round this boot (its last good round quoted resetCount {}, \
             this evidence {})",
            st.boot.map_or_else(|| "none".to_owned(), |b| b.to_string()),
            q.boot.map_or_else(|| "none".to_owned(), |b| b.to_string()),
        ),
        Some(st) if st.trusted && q.runtime.is_some() && st.ima_policy.as_ref() != q.runtime => {
            "the node's last good round was under another runtime policy (or an older \
             version of this one)"
                .to_owned()
        }
        Some(st) if st.missed_at.is_some() || (st.trusted && !st.trusted_at(q.at)) => format!(
            "the node missed its round (due by {})",
            st.overdue_at().unwrap_or(0)
        ),
        Some(st) if !st.trusted => format!(
            "the node's last round failed ({})",
            st.last_failure.as_deref().unwrap_or("no reason recorded")
        ),
        Some(st) if st.reputation < min => format!(
            "the node's reputation {} is below the policy's minimum {min}",
            st.reputation
        ),
        Some(_) => return None,
    };
    Some(check("broker.node_trust", reason))
}

/// Counts missed rounds every `every`, audits each, and updates the node gauges.
async fn sweep_rounds(s: AppState, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let at = now();
        match s.store.sweep_missed_rounds(at).await {
            Ok(missed) => {
                for (instance, state) in missed {
                    s.metrics
                        .rounds
                        .get_or_create(&RoundLabels {
                            outcome: "missed".into(),
                        })
                        .inc();
                    let reasons = vec![
                        state.last_failure.clone().unwrap_or_default(),
                        format!("reputation now {}", state.reputation),
                    ];
                    let subject = format!("round instance={}", hex::encode(&instance));
                    if let Err(e) = audit(&s, "round", &subject, "missed", reasons).await {
                        tracing::warn!(error = ?e, "auditing a missed round failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "looking for missed rounds failed"),
        }
        match s.store.round_census(at).await {
            Ok((trusted, untrusted)) => {
                for (label, n) in [("trusted", trusted), ("untrusted", untrusted)] {
                    s.metrics
                        .nodes
                        .get_or_create(&TrustLabels {
                            trust: label.into(),
                        })
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
            }
            Err(e) => tracing::warn!(error = %e, "counting nodes failed"),
        }
    }
}

/// The subject line of an audit row. `instance` is the appraised manifest's (only given when
/// the appraisal affirmed it); a nonce of any other length than the broker's is not copied
/// into the log (a client could make it megabytes long).
fn subject(what: &str, instance: Option<&[u8; 16]>, nonce: &[u8]) -> String {
    let nonce = if nonce.len() == super::store::NONCE_LEN {
        hex::encode(nonce)
    } else {
        format!("({} bytes)", nonce.len())
    };
    match instance {
        Some(i) => format!("{what} instance={} nonce={nonce}", hex::encode(i)),
        None => format!("{what} nonce={nonce}"),
    }
}

/// Audits and answers a request for something that does not exist.
async fn not_found_refusal(
    s: &Shared,
    action: &str,
    what: &str,
    message: String,
) -> Result<ApiError, ApiError> {
    audit(s, action, what, "refused", vec![message.clone()]).await?;
    Ok(ApiError::NotFound(message))
}

/// Redeems the bundle's nonce, auditing a refusal.
async fn redeem(s: &Shared, action: &str, what: &str, nonce: &[u8]) -> Result<(), ApiError> {
    let refusal = if nonce.len() == super::store::NONCE_LEN {
        s.store.redeem_nonce(nonce, now()).await?.err()
    } else {
        Some(super::store::NonceRefusal::Unknown)
    };
    if let Some(r) = refusal {
        let failed = vec![check("broker.nonce", r.to_string())];
        audit(
            s,
            action,
            &subject(what, None, nonce),
            "refused",
            reasons(&failed),
        )
        .await?;
        return Err(ApiError::Refused {
            message: "the bundle's nonce is not a live nonce of this broker".into(),
            failed,
        });
    }
    Ok(())
}

/// Appraises on a blocking thread (ECDSA and RSA verification take milliseconds).
async fn appraise(
    s: &Shared,
    bundle: Arc<Bundle>,
    loaded: Loaded,
    ima_position: Option<ImaPosition>,
) -> Result<BundleAppraisal, ApiError> {
    let _turn = s
        .appraisals
        .acquire()
        .await
        .map_err(|_| ApiError::Internal("the appraisal queue is closed"))?;
    let crl = s.crl.clone();
    tokio::task::spawn_blocking(move || {
        let mut ctx = BundleContext::new(&loaded.verifier, &bundle.nonce, SystemTime::now());
        ctx.crl = crl.as_deref().map(Vec::as_slice);
        ctx.expected_pcrs = loaded.policy.reference_pcrs;
        ctx.requester_vmpl = loaded.policy.requester_vmpl;
        ctx.min_epoch = loaded.policy.min_epoch;
        ctx.ima_policy = loaded.runtime.as_deref();
        ctx.ima_position = ima_position;
        verify_bundle(&bundle, &ctx)
    })
    .await
    .map_err(|_| ApiError::Internal("the appraisal task failed"))?
    .map_err(|e| {
        tracing::warn!(error = %e, "appraisal could not run");
        ApiError::Internal("the appraisal could not run")
    })
}

fn failed_checks(appraisal: &BundleAppraisal) -> Vec<FailedCheck> {
    appraisal
        .failures()
        .map(|c| {
            check(
                &c.id.to_string(),
                c.failure().map(|f| f.to_string()).unwrap_or_default(),
            )
        })
        .collect()
}

/// The manifest's state, as the epoch record needs it (the appraisal already parsed and
/// checked the manifest; this re-parse cannot fail for an affirming bundle).
fn observed(manifest: &VtpmManifest<'_>) -> ObservedState {
    let m = &manifest.module;
    match m.state {
        StateKind::Fresh => ObservedState::Fresh { epoch: m.epoch },
        StateKind::Restored => ObservedState::Restored { epoch: m.epoch },
        StateKind::Ephemeral => ObservedState::Ephemeral,
    }
}

/// Accepts the manifest's sealed state for its instance, or the refusal as a failed check.
async fn accept_epoch(
    s: &Shared,
    manifest: &VtpmManifest<'_>,
    action: &str,
) -> Result<Option<FailedCheck>, ApiError> {
    match s
        .store
        .observe_state(
            manifest.module.instance_id,
            observed(manifest),
            now(),
            action,
        )
        .await?
    {
        Ok(()) => Ok(None),
        Err(r) => Ok(Some(check("broker.epoch", r.to_string()))),
    }
}

fn sign_ear(
    s: &Shared,
    appraisal: &BundleAppraisal,
    extra: &[FailedCheck],
) -> Result<String, ApiError> {
    let mut ear = appraisal
        .to_ear(now())
        .map_err(|_| ApiError::Internal("the EAR could not be built"))?;
    if !extra.is_empty() {
        // A broker check (the epoch record) failed after an affirming appraisal: the SVSM
        // submodule is then contraindicated, and so is the EAR.
        if let Some(svsm) = ear.submods.get_mut(crate::bundle_verify::EAR_SUBMOD_SVSM) {
            svsm.status = ear::TrustTier::Contraindicated;
        }
        ear.status = Some(ear::TrustTier::Contraindicated);
    }
    ear.sign_jwt_pem(ear::Algorithm::ES256, &s.ear_key_pem)
        .map_err(|_| ApiError::Internal("the EAR could not be signed"))
}

// ---------------------------------------------------------------------------------------------
// Public API

async fn challenge(State(s): State<AppState>) -> Result<axum::Json<api::Challenge>, ApiError> {
    let mut nonce = [0u8; super::store::NONCE_LEN];
    {
        use rand_core::RngCore;
        rand_core::OsRng
            .try_fill_bytes(&mut nonce)
            .map_err(|_| ApiError::Internal("no randomness"))?;
    }
    let at = now();
    s.store.issue_nonce(&nonce, at, s.nonce_ttl_secs).await?;
    Ok(axum::Json(api::Challenge {
        nonce: hex::encode(nonce),
        expires_at: at.saturating_add(s.nonce_ttl_secs),
    }))
}

async fn attest(
    State(s): State<AppState>,
    StrictJson(req): StrictJson<api::AttestRequest>,
) -> Result<axum::Json<api::AttestResponse>, ApiError> {
    let bundle = Arc::new(decode_bundle(req.bundle)?);
    let policy_name = req.policy.as_deref().unwrap_or(DEFAULT_POLICY);
    let what = format!("policy={policy_name}");
    let mut policy = match s.store.policy(policy_name).await? {
        Some(body) => compile_policy(&s, policy_name, &body, false)?,
        None => {
            let message = format!("no policy named {policy_name:?}");
            return Err(not_found_refusal(&s, "attest", &what, message).await?);
        }
    };
    load_runtime_policy(&s, &mut policy).await?;
    // A policy with a runtime policy makes this attestation a round of continuous attestation.
    let round_interval = policy
        .policy
        .ima_policy
        .is_some()
        .then_some(policy.policy.round_interval_s);
    let runtime = policy.runtime_digest;
    let position = match round_interval {
        Some(_) => Some(kept_position(&s, &bundle, runtime.as_ref()).await?.1),
        None => None,
    };
    // Only an appraisal that pins the SVSM image may move an instance's epoch record: under a
    // policy without a MEASUREMENT allowlist any SVSM on genuine hardware is affirmed, and it
    // could claim another instance's id with a huge epoch.
    let pins_image = policy
        .policy
        .snp
        .measurements
        .as_ref()
        .is_some_and(|m| !m.is_empty());
    redeem(&s, "attest", &what, &bundle.nonce).await?;
    let appraisal = appraise(&s, bundle.clone(), policy, position).await?;
    let mut failed = failed_checks(&appraisal);
    let affirmed = failed.is_empty();
    let manifest = VtpmManifest::parse(&bundle.manifest).ok();
    let mut broker_failed = Vec::new();
    if let (true, true, Some(m)) = (affirmed, pins_image, &manifest) {
        broker_failed.extend(accept_epoch(&s, m, "attest").await?);
    }
    failed.extend(broker_failed.iter().cloned());
    let decision = if failed.is_empty() {
        "allowed"
    } else {
        "refused"
    };
    // The answer names the instance the affirmed manifest claims; the broker's own records
    // name it only when the policy pinned the image, which is what vouches for the claim.
    let instance = manifest
        .as_ref()
        .filter(|_| affirmed)
        .map(|m| m.module.instance_id);
    let vouched = instance.filter(|_| pins_image);
    audit(
        &s,
        "attest",
        &subject(&what, vouched, &bundle.nonce),
        decision,
        reasons(&failed),
    )
    .await?;
    if let (Some(i), false) = (vouched, broker_failed.is_empty()) {
        s.store.note_decision(i, "attest", "refused", now()).await?;
    }
    // A round counts for the node its evidence is from: under a policy that pins the image,
    // with every signature verified (a failed round too, so a node cannot shed a failure by
    // sending garbage, and nobody else can spend its reputation).
    let round = match (round_interval, runtime, &manifest) {
        (Some(base), Some(runtime), Some(m)) if pins_image && authentic(&appraisal) => {
            let instance = m.module.instance_id;
            record_round(&s, instance, &bundle, &appraisal, &failed, base, runtime).await?
        }
        _ => None,
    };
    let ear = sign_ear(&s, &appraisal, &broker_failed)?;
    Ok(axum::Json(api::AttestResponse {
        verdict: if failed.is_empty() {
            "affirming"
        } else {
            "contraindicated"
        }
        .to_owned(),
        ear,
        failed_checks: failed,
        instance_id: instance.map(hex::encode),
        round,
    }))
}

async fn release(
    State(s): State<AppState>,
    StrictJson(req): StrictJson<api::ReleaseRequest>,
) -> Result<axum::Json<api::Released>, ApiError> {
    let bundle = Arc::new(decode_bundle(req.bundle)?);
    let what = format!("resource={}", req.resource);
    let Some((resource, policy)) = s.store.resource_with_policy(&req.resource).await? else {
        let message = format!("no resource named {:?}", req.resource);
        return Err(not_found_refusal(&s, "release", &what, message).await?);
    };
    let mut policy = match policy {
        Some(body) => compile_policy(&s, &resource.policy, &body, true)?,
        None => {
            // Deleting a policy in use is refused; this is a race with an admin change.
            audit(
                &s,
                "release",
                &what,
                "refused",
                vec![format!(
                    "the resource's policy {:?} is missing",
                    resource.policy
                )],
            )
            .await?;
            return Err(ApiError::Internal("the resource's policy is missing"));
        }
    };
    load_runtime_policy(&s, &mut policy).await?;
    let min_reputation = policy.policy.min_reputation;
    // A release is not a round (it moves no IMA position), but it continues from the kept one.
    let runtime = policy.runtime_digest;
    let (state, position) = kept_position(&s, &bundle, runtime.as_ref()).await?;
    let position = policy.policy.ima_policy.is_some().then_some(position);
    redeem(&s, "release", &what, &bundle.nonce).await?;
    let appraisal = appraise(&s, bundle.clone(), policy, position).await?;
    let mut failed = failed_checks(&appraisal);
    if let (Some(min), true) = (min_reputation, failed.is_empty()) {
        let query = TrustQuery {
            min,
            at: now(),
            boot: claimed_node(&bundle).map(|(_, boot)| boot),
            runtime: runtime.as_ref(),
        };
        failed.extend(node_trust(state.as_ref(), &query));
    }
    let manifest = VtpmManifest::parse(&bundle.manifest).ok();
    // A release policy always pins the image, so an affirmed appraisal vouches for the
    // manifest's instance id: a refusal after it (epoch, transport key) may name the instance.
    let vouched = manifest
        .as_ref()
        .filter(|_| failed.is_empty())
        .map(|m| m.module.instance_id);
    // The package is made before the epoch moves: a manifest whose transport key is not a
    // P-384 point (an SVSM that had no entropy at boot) is refused without touching state.
    let mut package = None;
    if let (true, Some(m)) = (failed.is_empty(), &manifest) {
        match wrap(&s, &resource, m, &bundle.nonce)? {
            Ok(p) => package = Some(p),
            Err(f) => failed.push(f),
        }
    }
    if let (true, Some(m)) = (failed.is_empty(), &manifest) {
        failed.extend(accept_epoch(&s, m, "release").await?);
    }
    if manifest.is_none() && failed.is_empty() {
        failed.push(check("svsm.manifest", "the manifest does not parse"));
    }
    let (Some(manifest), Some(package), true) = (manifest, package, failed.is_empty()) else {
        let subject_line = subject(&what, vouched, &bundle.nonce);
        audit(&s, "release", &subject_line, "refused", reasons(&failed)).await?;
        if let Some(i) = vouched {
            s.store
                .note_decision(i, "release", "refused", now())
                .await?;
        }
        return Err(ApiError::Refused {
            message: format!(
                "the appraisal does not admit a release of {:?}",
                resource.name
            ),
            failed,
        });
    };
    let subject_line = subject(&what, Some(manifest.module.instance_id), &bundle.nonce);
    audit(&s, "release", &subject_line, "allowed", vec![]).await?;
    use base64::Engine;
    Ok(axum::Json(api::Released {
        resource: resource.name.clone(),
        kind: resource.kind.clone(),
        package: base64::engine::general_purpose::STANDARD.encode(package),
        owner_vmpl: manifest.module.requester_vmpl,
        instance_id: hex::encode(manifest.module.instance_id),
        public_key: resource.public_key.as_deref().map(hex::encode),
    }))
}

/// `POST /v1/ak/challenge`: appraises the bundle; for an affirmed one, a credential for the
/// attested EK and the AK's name.
async fn ak_challenge(
    State(s): State<AppState>,
    StrictJson(req): StrictJson<api::AkChallengeRequest>,
) -> Result<axum::Json<api::AkChallenge>, ApiError> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let bundle = Arc::new(decode_bundle(req.bundle)?);
    let ak_public = b64
        .decode(&req.ak_public)
        .map_err(|_| ApiError::malformed("ak_public", "not base64"))?;
    let policy_name = req.policy.as_deref().unwrap_or(DEFAULT_POLICY);
    let what = format!("ak policy={policy_name}");
    let policy = match s.store.policy(policy_name).await? {
        Some(body) => compile_policy(&s, policy_name, &body, false)?,
        None => {
            let message = format!("no policy named {policy_name:?}");
            return Err(not_found_refusal(&s, "ak-challenge", &what, message).await?);
        }
    };
    redeem(&s, "ak-challenge", &what, &bundle.nonce).await?;
    let appraisal = appraise(&s, bundle.clone(), policy, None).await?;
    let mut failed = failed_checks(&appraisal);
    let manifest = VtpmManifest::parse(&bundle.manifest).ok();
    if manifest.is_none() && failed.is_empty() {
        failed.push(check("svsm.manifest", "the manifest does not parse"));
    }
    // The AK must be a restricted signing key the TPM made and keeps (fixedTPM, fixedParent,
    // sensitiveDataOrigin): only such a key can be vouched for by activation.
    let ak = match crate::bundle_verify::tpm::AkPublic::parse(&ak_public) {
        Ok(ak) if ak.name_alg == 0x000B => Some(ak),
        Ok(ak) => {
            failed.push(check(
                "broker.ak",
                format!("the AK's nameAlg is {:#06x}, not SHA-256", ak.name_alg),
            ));
            None
        }
        Err(e) => {
            failed.push(check("broker.ak", e.to_string()));
            None
        }
    };
    let (Some(manifest), Some(_), true) = (manifest, ak, failed.is_empty()) else {
        audit(
            &s,
            "ak-challenge",
            &subject(&what, None, &bundle.nonce),
            "refused",
            reasons(&failed),
        )
        .await?;
        return Err(ApiError::Refused {
            message: "the appraisal does not admit certifying an AK".into(),
            failed,
        });
    };
    let instance: [u8; 16] = *manifest.module.instance_id;
    let mut secret = Zeroizing::new([0u8; 32]);
    let mut id = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, secret.as_mut());
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
    let name = crate::credential::sha256_name(&ak_public);
    let credential = crate::credential::make_credential(
        manifest.ek_public,
        &name,
        secret.as_ref(),
        &mut rand_core::OsRng,
    )
    .map_err(|e| {
        tracing::warn!(error = %e, "MakeCredential failed for an affirmed manifest");
        ApiError::Internal("the credential could not be made")
    })?;
    let expires_at = now().saturating_add(s.nonce_ttl_secs);
    let kept = s.ak_challenges.insert(
        id,
        super::ak::PendingAk {
            secret,
            ak_public,
            instance,
            expires_at,
        },
        now(),
    );
    if !kept {
        return Err(ApiError::Unavailable);
    }
    let subject_line = subject(&what, Some(&instance), &bundle.nonce);
    audit(&s, "ak-challenge", &subject_line, "allowed", vec![]).await?;
    Ok(axum::Json(api::AkChallenge {
        challenge_id: hex::encode(id),
        credential_blob: b64.encode(&credential.id_object),
        encrypted_secret: b64.encode(&credential.encrypted_secret),
        expires_at,
    }))
}

/// `POST /v1/ak/certificate`: the secret TPM2_ActivateCredential recovered buys the AK's
/// certificate, once.
async fn ak_certificate(
    State(s): State<AppState>,
    StrictJson(req): StrictJson<api::AkCertificateRequest>,
) -> Result<axum::Json<api::AkCertificate>, ApiError> {
    use base64::Engine;
    let id: [u8; 16] = hex::decode(&req.challenge_id)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| ApiError::malformed("challenge_id", "not 16 bytes of hex"))?;
    let secret = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(&req.secret)
            .map_err(|_| ApiError::malformed("secret", "not base64"))?,
    );
    let what = format!("ak challenge={}", req.challenge_id);
    let pending = match s.ak_challenges.redeem(&id, &secret, now()) {
        Ok(p) => p,
        Err(e) => {
            let failed = vec![check("broker.credential", e.to_string())];
            audit(&s, "ak-certificate", &what, "refused", reasons(&failed)).await?;
            return Err(match e {
                super::ak::RedeemError::Unknown => ApiError::NotFound(e.to_string()),
                _ => ApiError::Refused {
                    message: "the credential was not activated by the attested TPM".into(),
                    failed,
                },
            });
        }
    };
    let ak = crate::bundle_verify::tpm::AkPublic::parse(&pending.ak_public)
        .map_err(|_| ApiError::Internal("a kept AK no longer parses"))?;
    let certificate = s.ak_ca.issue(&ak, &pending.instance, now()).map_err(|e| {
        tracing::warn!(error = %e, "AK certificate");
        ApiError::Internal("the AK certificate could not be made")
    })?;
    let subject_line = format!("{what} instance={}", hex::encode(pending.instance));
    audit(&s, "ak-certificate", &subject_line, "allowed", vec![]).await?;
    Ok(axum::Json(api::AkCertificate {
        certificate,
        ca: s.ak_ca.certificate_pem().to_owned(),
        instance_id: hex::encode(pending.instance),
    }))
}

/// `GET /v1/ak-ca`: the AK CA certificate, PEM.
async fn ak_ca(State(s): State<AppState>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/x-pem-file")],
        s.ak_ca.certificate_pem().to_owned(),
    )
        .into_response()
}

/// Wraps the resource's key for what the appraised manifest names; `Ok(Err(_))` when the
/// manifest's transport key cannot receive it.
fn wrap(
    s: &Shared,
    resource: &StoredResource,
    manifest: &VtpmManifest<'_>,
    nonce: &[u8],
) -> Result<Result<Vec<u8>, FailedCheck>, ApiError> {
    let kind = api::kind_from_name(&resource.kind).ok_or(ApiError::Internal("stored kind"))?;
    let usage = Usage::from_bits(resource.usage).ok_or(ApiError::Internal("stored usage"))?;
    let owner = svsm_core::platform::Vmpl::new(manifest.module.requester_vmpl)
        .ok_or(ApiError::Internal("requester VMPL above 3"))?;
    let material = s
        .master_key
        .open(&resource.name, &resource.sealed)
        .map_err(|e| {
            tracing::error!(resource = %resource.name, error = %e, "a sealed secret does not open");
            ApiError::Internal("a sealed secret does not open")
        })?;
    // The ECDH with a fresh ephemeral key, in aws-lc (constant time, about four times faster
    // than the pure-Rust curve: it is most of a release's CPU); the package itself is built by
    // svsm-core, the one definition of the format.
    use aws_lc_rs::agreement;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let ephemeral = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P384, &rng)
        .map_err(|_| ApiError::Internal("no randomness"))?;
    let ephemeral_public: [u8; 97] = ephemeral
        .compute_public_key()
        .map_err(|_| ApiError::Internal("ephemeral key"))?
        .as_ref()
        .try_into()
        .map_err(|_| ApiError::Internal("ephemeral key"))?;
    let mut iv = [0u8; 12];
    aws_lc_rs::rand::fill(&mut iv).map_err(|_| ApiError::Internal("no randomness"))?;
    let target = svsm_core::vault::ImportTarget {
        kind,
        usage,
        owner,
        instance_id: manifest.module.instance_id,
        recipient: manifest.module.transport_public,
        name: resource.name.as_bytes(),
        nonce,
    };
    if p384::PublicKey::from_sec1_bytes(manifest.module.transport_public).is_err() {
        return Ok(Err(check(
            "svsm.transport_key",
            "the manifest's transport key is not a P-384 point (the SVSM had no entropy at boot?): nothing can be wrapped for it",
        )));
    }
    let recipient =
        agreement::UnparsedPublicKey::new(&agreement::ECDH_P384, manifest.module.transport_public);
    agreement::agree_ephemeral(
        ephemeral,
        recipient,
        ApiError::Internal("the recipient is not a P-384 point"),
        |shared_x| {
            let shared_x: Zeroizing<[u8; 48]> = Zeroizing::new(
                shared_x
                    .try_into()
                    .map_err(|_| ApiError::Internal("ECDH output"))?,
            );
            svsm_core::vault::seal_import(&target, &ephemeral_public, &shared_x, &iv, &material)
                .map_err(|_| ApiError::Internal("the key could not be wrapped"))
        },
    )
    .map(Ok)
}

async fn ear_key(State(s): State<AppState>) -> axum::Json<api::EarKey> {
    axum::Json(api::EarKey {
        alg: "ES256".into(),
        jwk: s.ear_jwk.clone(),
    })
}

async fn healthz(State(s): State<AppState>) -> Response {
    match s.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ok"})),
        )
            .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &s.metrics.registry).is_err() {
        return ApiError::Internal("metrics").into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint (the API is under /v1; see docs/broker.md)".into())
}

// ---------------------------------------------------------------------------------------------
// Admin API

fn valid_name(name: &str) -> Result<(), ApiError> {
    if valid_key_name(name.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::malformed(
            "name",
            "a name is 1..64 printable ASCII characters without spaces",
        ))
    }
}

async fn list_policies(
    State(s): State<AppState>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let mut out = serde_json::Map::new();
    for (name, body) in s.store.policies().await? {
        let doc: serde_json::Value =
            serde_json::from_str(&body).map_err(|_| ApiError::Internal("stored policy"))?;
        out.insert(name, doc);
    }
    Ok(axum::Json(serde_json::Value::Object(out)))
}

async fn get_policy(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<PolicyDocument>, ApiError> {
    let body = s
        .store
        .policy(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no policy named {name:?}")))?;
    PolicyDocument::from_json(&body)
        .map(axum::Json)
        .map_err(|_| ApiError::Internal("stored policy"))
}

async fn put_policy(
    State(s): State<AppState>,
    Path(name): Path<String>,
    StrictJson(doc): StrictJson<PolicyDocument>,
) -> Result<axum::Json<PolicyDocument>, ApiError> {
    valid_name(&name)?;
    doc.compile(false)
        .map_err(|e| ApiError::malformed("policy", e.to_string()))?;
    if let Some(ima) = &doc.ima_policy {
        if s.store.ima_policy_digest(ima).await?.is_none() {
            return Err(ApiError::malformed(
                "ima_policy",
                format!("no runtime policy named {ima:?} (PUT /v1/admin/ima-policies/{ima} first)"),
            ));
        }
    }
    // A policy some resource releases under must stay fit for a release.
    if s.store.resources().await?.iter().any(|r| r.policy == name) {
        doc.compile(true)
            .map_err(|e| ApiError::malformed("policy", e.to_string()))?;
    }
    let body = serde_json::to_string(&doc).map_err(|_| ApiError::Internal("policy encoding"))?;
    s.store.put_policy(&name, &body, now()).await?;
    audit(
        &s,
        "admin",
        &format!("put policy={name}"),
        "allowed",
        vec![],
    )
    .await?;
    Ok(axum::Json(doc))
}

async fn delete_policy(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    match s.store.delete_policy(&name).await? {
        Err(user) => Err(ApiError::Conflict(format!(
            "resource {user:?} releases under policy {name:?}"
        ))),
        Ok(false) => Err(ApiError::NotFound(format!("no policy named {name:?}"))),
        Ok(true) => {
            audit(
                &s,
                "admin",
                &format!("delete policy={name}"),
                "allowed",
                vec![],
            )
            .await?;
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

async fn list_ima_policies(
    State(s): State<AppState>,
) -> Result<axum::Json<Vec<api::ImaPolicyInfo>>, ApiError> {
    Ok(axum::Json(
        s.store
            .ima_policies()
            .await?
            .into_iter()
            .map(|(name, updated_at, digest)| api::ImaPolicyInfo {
                name,
                updated_at,
                sha256: hex::encode(digest),
            })
            .collect(),
    ))
}

async fn get_ima_policy(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<RuntimePolicyDocument>, ApiError> {
    let (body, _) = s
        .store
        .ima_policy(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no runtime policy named {name:?}")))?;
    serde_json::from_str(&body)
        .map(axum::Json)
        .map_err(|_| ApiError::Internal("stored runtime policy"))
}

async fn put_ima_policy(
    State(s): State<AppState>,
    Path(name): Path<String>,
    StrictJson(doc): StrictJson<RuntimePolicyDocument>,
) -> Result<axum::Json<api::ImaPolicyInfo>, ApiError> {
    valid_name(&name)?;
    let compiled = RuntimePolicy::compile(&doc)
        .map_err(|e| ApiError::malformed("ima_policy", e.to_string()))?;
    let body = serde_json::to_string(&doc).map_err(|_| ApiError::Internal("policy encoding"))?;
    // Caches, kept IMA positions and node trust follow the body's digest, so a change is seen
    // by every replica however soon it follows the last.
    let at = now();
    let digest = s.store.put_ima_policy(&name, &body, at).await?;
    audit(
        &s,
        "admin",
        &format!("put ima-policy={name}"),
        "allowed",
        vec![format!(
            "{} paths, release {}",
            compiled.len(),
            compiled.release()
        )],
    )
    .await?;
    Ok(axum::Json(api::ImaPolicyInfo {
        name,
        updated_at: at,
        sha256: hex::encode(digest),
    }))
}

async fn delete_ima_policy(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    for (policy, body) in s.store.policies().await? {
        let names_it = PolicyDocument::from_json(&body)
            .map(|d| d.ima_policy.as_deref() == Some(name.as_str()))
            .unwrap_or(false);
        if names_it {
            return Err(ApiError::Conflict(format!(
                "policy {policy:?} names runtime policy {name:?}"
            )));
        }
    }
    if !s.store.delete_ima_policy(&name).await? {
        return Err(ApiError::NotFound(format!(
            "no runtime policy named {name:?}"
        )));
    }
    audit(
        &s,
        "admin",
        &format!("delete ima-policy={name}"),
        "allowed",
        vec![],
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn resource_info(r: &StoredResource) -> api::ResourceInfo {
    api::ResourceInfo {
        name: r.name.clone(),
        kind: r.kind.clone(),
        usage: api::usage_names(Usage::from_bits_truncate(r.usage)),
        policy: r.policy.clone(),
        public_key: r.public_key.as_deref().map(hex::encode),
        created_at: r.created_at,
    }
}

/// A new key's secret material and, for an asymmetric key, its public key (SEC1).
type KeyMaterial = (Zeroizing<Vec<u8>>, Option<Vec<u8>>);

/// The material for a new key (given or generated) and its public key (SEC1 uncompressed).
fn key_material(kind: KeyKind, given: Option<&str>) -> Result<KeyMaterial, ApiError> {
    let material = match given {
        Some(b64) => {
            use base64::Engine;
            let bytes = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| ApiError::malformed("material", "not base64"))?,
            );
            if bytes.len() != kind.secret_len() {
                return Err(ApiError::malformed(
                    "material",
                    format!(
                        "{} bytes; a {} key is {} bytes",
                        bytes.len(),
                        api::kind_name(kind),
                        kind.secret_len()
                    ),
                ));
            }
            bytes
        }
        None => {
            use rand_core::RngCore;
            let mut bytes = Zeroizing::new(vec![0u8; kind.secret_len()]);
            match kind {
                KeyKind::EcdsaP256 | KeyKind::EcdhP256 => bytes
                    .copy_from_slice(&p256::SecretKey::random(&mut rand_core::OsRng).to_bytes()),
                KeyKind::EcdsaP384 | KeyKind::EcdhP384 => bytes
                    .copy_from_slice(&p384::SecretKey::random(&mut rand_core::OsRng).to_bytes()),
                KeyKind::Aes256Gcm
                | KeyKind::HmacSha384
                | KeyKind::HmacSha256
                | KeyKind::Secret256 => rand_core::OsRng
                    .try_fill_bytes(&mut bytes)
                    .map_err(|_| ApiError::Internal("no randomness"))?,
            }
            bytes
        }
    };
    let public = match kind {
        KeyKind::EcdsaP256 | KeyKind::EcdhP256 => Some(
            p256::SecretKey::from_slice(&material)
                .map_err(|_| ApiError::malformed("material", "not a P-256 private scalar"))?
                .public_key()
                .to_sec1_bytes()
                .to_vec(),
        ),
        KeyKind::EcdsaP384 | KeyKind::EcdhP384 => Some(
            p384::SecretKey::from_slice(&material)
                .map_err(|_| ApiError::malformed("material", "not a P-384 private scalar"))?
                .public_key()
                .to_sec1_bytes()
                .to_vec(),
        ),
        KeyKind::Aes256Gcm | KeyKind::HmacSha384 | KeyKind::HmacSha256 | KeyKind::Secret256 => None,
    };
    Ok((material, public))
}

async fn put_resource(
    State(s): State<AppState>,
    Path(name): Path<String>,
    StrictJson(req): StrictJson<api::NewResource>,
) -> Result<(StatusCode, axum::Json<api::ResourceInfo>), ApiError> {
    valid_name(&name)?;
    let kind = api::kind_from_name(&req.kind).ok_or_else(|| {
        ApiError::malformed(
            "kind",
            "one of ecdsa-p256, ecdsa-p384, aes-256-gcm, hmac-sha384, ecdh-p384",
        )
    })?;
    let usage = api::usage_from_names(&req.usage)
        .map_err(|u| ApiError::malformed("usage", format!("unknown usage {u:?}")))?;
    if usage.is_empty() || !kind.allowed_usages().contains(usage) {
        return Err(ApiError::malformed(
            "usage",
            format!(
                "a {} key allows {:?}",
                req.kind,
                api::usage_names(kind.allowed_usages())
            ),
        ));
    }
    let body = s.store.policy(&req.policy).await?.ok_or_else(|| {
        ApiError::malformed("policy", format!("no policy named {:?}", req.policy))
    })?;
    PolicyDocument::from_json(&body)
        .map_err(|_| ApiError::Internal("stored policy"))?
        .compile(true)
        .map_err(|e| ApiError::malformed("policy", e.to_string()))?;
    let (material, public_key) = key_material(kind, req.material.as_deref())?;
    let sealed = s
        .master_key
        .seal(&name, &material)
        .map_err(|_| ApiError::Internal("the secret could not be sealed"))?;
    let stored = StoredResource {
        name: name.clone(),
        kind: req.kind.clone(),
        usage: usage.bits(),
        policy: req.policy.clone(),
        sealed,
        public_key,
        created_at: now(),
    };
    if !s.store.insert_resource(&stored).await? {
        return Err(ApiError::Conflict(format!(
            "resource {name:?} exists (a released key never changes under its name; delete it first)"
        )));
    }
    audit(
        &s,
        "admin",
        &format!(
            "create resource={name} kind={} policy={}",
            req.kind, req.policy
        ),
        "allowed",
        vec![],
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(resource_info(&stored))))
}

async fn patch_resource(
    State(s): State<AppState>,
    Path(name): Path<String>,
    StrictJson(req): StrictJson<api::ResourcePolicyChange>,
) -> Result<axum::Json<api::ResourceInfo>, ApiError> {
    let body = s.store.policy(&req.policy).await?.ok_or_else(|| {
        ApiError::malformed("policy", format!("no policy named {:?}", req.policy))
    })?;
    PolicyDocument::from_json(&body)
        .map_err(|_| ApiError::Internal("stored policy"))?
        .compile(true)
        .map_err(|e| ApiError::malformed("policy", e.to_string()))?;
    if !s.store.set_resource_policy(&name, &req.policy).await? {
        return Err(ApiError::NotFound(format!("no resource named {name:?}")));
    }
    audit(
        &s,
        "admin",
        &format!("set resource={name} policy={}", req.policy),
        "allowed",
        vec![],
    )
    .await?;
    let r = s
        .store
        .resource(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no resource named {name:?}")))?;
    Ok(axum::Json(resource_info(&r)))
}

async fn get_resource(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<api::ResourceInfo>, ApiError> {
    let r = s
        .store
        .resource(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no resource named {name:?}")))?;
    Ok(axum::Json(resource_info(&r)))
}

async fn list_resources(
    State(s): State<AppState>,
) -> Result<axum::Json<Vec<api::ResourceInfo>>, ApiError> {
    Ok(axum::Json(
        s.store
            .resources()
            .await?
            .iter()
            .map(resource_info)
            .collect(),
    ))
}

async fn delete_resource(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !s.store.delete_resource(&name).await? {
        return Err(ApiError::NotFound(format!("no resource named {name:?}")));
    }
    audit(
        &s,
        "admin",
        &format!("delete resource={name}"),
        "allowed",
        vec![],
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    since: Option<i64>,
    limit: Option<i64>,
}

fn list_query(
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<ListQuery, ApiError> {
    q.map(|Query(q)| q).map_err(|e| ApiError::Malformed {
        field: Some("query".into()),
        message: e.body_text(),
    })
}

async fn list_nodes(
    State(s): State<AppState>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<Vec<super::store::NodeRecord>>, ApiError> {
    let q = list_query(q)?;
    Ok(axum::Json(
        s.store
            .nodes(q.limit.unwrap_or(1000).clamp(1, 10_000), now())
            .await?,
    ))
}

async fn read_audit(
    State(s): State<AppState>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<Vec<AuditRecord>>, ApiError> {
    let q = list_query(q)?;
    Ok(axum::Json(
        s.store
            .audit_since(
                q.since.unwrap_or(0),
                q.limit.unwrap_or(1000).clamp(1, 100_000),
            )
            .await?,
    ))
}
