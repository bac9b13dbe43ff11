//! A client of the broker's API (reqwest over rustls), for the guest agent, the demo, the load
//! generator and the tests. It trusts only the CA certificates it is given (the broker's
//! self-signed certificate on a first run), never the system store, and it decodes refusals
//! into [`ClientError::Refused`] with the failed checks.

use super::api::{self, ErrorBody};
use serde::de::DeserializeOwned;
use serde::Serialize;
use svsm_evidence::BundleJson;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The CA certificate does not parse.
    #[error("CA certificate: {0}")]
    Ca(String),
    /// The connection or TLS failed, or the answer is not what the API promises.
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    /// The broker answered an error (`refused` carries the failed checks).
    #[error("broker answered {status}: {} ({})", body.message, body.error)]
    Api {
        /// HTTP status.
        status: u16,
        /// The error body.
        body: ErrorBody,
    },
    /// The broker answered an error that is not the API's error body.
    #[error("broker answered {status} without an API error body")]
    Unexpected {
        /// HTTP status.
        status: u16,
    },
}

impl ClientError {
    /// The failed checks of a refusal (empty otherwise).
    pub fn failed_checks(&self) -> &[api::FailedCheck] {
        match self {
            ClientError::Api { body, .. } => &body.failed_checks,
            _ => &[],
        }
    }

    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::Unexpected { status } => Some(*status),
            _ => None,
        }
    }
}

/// A broker client.
#[derive(Clone)]
pub struct BrokerClient {
    http: reqwest::Client,
    base: String,
    admin_token: Option<String>,
}

impl std::fmt::Debug for BrokerClient {
    // Never the admin token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerClient")
            .field("base", &self.base)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl BrokerClient {
    /// A client of the broker at `base` (`https://127.0.0.1:8443`) that trusts the PEM
    /// certificates in `ca_pem`.
    pub fn new(base: &str, ca_pem: &[u8]) -> Result<BrokerClient, ClientError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .timeout(std::time::Duration::from_secs(60));
        for cert in reqwest::Certificate::from_pem_bundle(ca_pem)
            .map_err(|e| ClientError::Ca(e.to_string()))?
        {
            builder = builder.add_root_certificate(cert);
        }
        Ok(BrokerClient {
            http: builder.build()?,
            base: base.trim_end_matches('/').to_owned(),
            admin_token: None,
        })
    }

    /// The same client, presenting `token` to the admin API.
    pub fn with_admin_token(mut self, token: &str) -> BrokerClient {
        self.admin_token = Some(token.to_owned());
        self
    }

    /// The underlying HTTP client (for raw requests in tests).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn answer<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, ClientError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response.json().await?);
        }
        let bytes = response.bytes().await?;
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(ClientError::Api {
                status: status.as_u16(),
                body,
            }),
            Err(_) => Err(ClientError::Unexpected {
                status: status.as_u16(),
            }),
        }
    }

    fn admin(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.admin_token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let mut rb = self.http.request(method, self.url(path));
        if path.starts_with("/v1/admin") {
            rb = self.admin(rb);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        Self::answer(rb.send().await?).await
    }

    /// `POST /v1/challenge`.
    pub async fn challenge(&self) -> Result<api::Challenge, ClientError> {
        self.send::<(), _>(reqwest::Method::POST, "/v1/challenge", None)
            .await
    }

    /// `POST /v1/attest`.
    pub async fn attest(
        &self,
        bundle: BundleJson,
        policy: Option<&str>,
    ) -> Result<api::AttestResponse, ClientError> {
        let req = api::AttestRequest {
            bundle,
            policy: policy.map(str::to_owned),
        };
        self.send(reqwest::Method::POST, "/v1/attest", Some(&req))
            .await
    }

    /// `POST /v1/release`.
    pub async fn release(
        &self,
        resource: &str,
        bundle: BundleJson,
    ) -> Result<api::Released, ClientError> {
        let req = api::ReleaseRequest {
            resource: resource.to_owned(),
            bundle,
        };
        self.send(reqwest::Method::POST, "/v1/release", Some(&req))
            .await
    }

    /// `POST /v1/ak/challenge`: `ak_public` is the AK's TPMT_PUBLIC.
    pub async fn ak_challenge(
        &self,
        bundle: BundleJson,
        policy: Option<&str>,
        ak_public: &[u8],
    ) -> Result<api::AkChallenge, ClientError> {
        use base64::Engine;
        let req = api::AkChallengeRequest {
            bundle,
            policy: policy.map(str::to_owned),
            ak_public: base64::engine::general_purpose::STANDARD.encode(ak_public),
        };
        self.send(reqwest::Method::POST, "/v1/ak/challenge", Some(&req))
            .await
    }

    /// `POST /v1/ak/certificate` with what TPM2_ActivateCredential recovered.
    pub async fn ak_certificate(
        &self,
        challenge_id: &str,
        secret: &[u8],
    ) -> Result<api::AkCertificate, ClientError> {
        use base64::Engine;
        let req = api::AkCertificateRequest {
            challenge_id: challenge_id.to_owned(),
            secret: base64::engine::general_purpose::STANDARD.encode(secret),
        };
        self.send(reqwest::Method::POST, "/v1/ak/certificate", Some(&req))
            .await
    }

    /// `GET /v1/ear-key`.
    pub async fn ear_key(&self) -> Result<api::EarKey, ClientError> {
        self.send::<(), _>(reqwest::Method::GET, "/v1/ear-key", None)
            .await
    }

    /// `PUT /v1/admin/policies/{name}`.
    pub async fn put_policy(
        &self,
        name: &str,
        doc: &super::policy::PolicyDocument,
    ) -> Result<super::policy::PolicyDocument, ClientError> {
        self.send(
            reqwest::Method::PUT,
            &format!("/v1/admin/policies/{name}"),
            Some(doc),
        )
        .await
    }

    /// `PUT /v1/admin/ima-policies/{name}`: a runtime policy (Keylime's format).
    pub async fn put_ima_policy(
        &self,
        name: &str,
        doc: &crate::measured::runtime_policy::RuntimePolicyDocument,
    ) -> Result<api::ImaPolicyInfo, ClientError> {
        self.send(
            reqwest::Method::PUT,
            &format!("/v1/admin/ima-policies/{name}"),
            Some(doc),
        )
        .await
    }

    /// `PUT /v1/admin/resources/{name}`.
    pub async fn put_resource(
        &self,
        name: &str,
        resource: &api::NewResource,
    ) -> Result<api::ResourceInfo, ClientError> {
        self.send(
            reqwest::Method::PUT,
            &format!("/v1/admin/resources/{name}"),
            Some(resource),
        )
        .await
    }

    /// `GET /v1/admin/audit?since=`.
    pub async fn audit(&self, since: i64) -> Result<Vec<api::AuditRecord>, ClientError> {
        self.send::<(), _>(
            reqwest::Method::GET,
            &format!("/v1/admin/audit?since={since}&limit=100000"),
            None,
        )
        .await
    }

    /// `GET /v1/admin/nodes`.
    pub async fn nodes(&self) -> Result<Vec<api::NodeRecord>, ClientError> {
        self.send::<(), _>(reqwest::Method::GET, "/v1/admin/nodes", None)
            .await
    }
}
