//! The ingest service: one inbound webhook request in, one reply out, and a forensic
//! row with the reply's outcome written before the reply on every path (a panic
//! included). Authentication and parsing are pure, so they run first and the
//! forensic row, its outcome and the inbox row are one transaction. Per-payment
//! callback tokens (QPay, JunglePay) need one read of the payment's token hash
//! before that transaction; a failed read is answered 503 like any store outage.

use crate::receiving::fallback_log::FallbackLog;
use crate::receiving::flood::RejectionLimit;
use crate::receiving::group_commit::GroupCommit;
use futures_util::FutureExt;
use payhook_domain::ports::{Admission, Clock, ForensicLog, PaymentStore, StoreError};
use payhook_domain::source::{AuthError, Authentication, Delivery, Parsed, PaymentToken, WebhookSource};
use payhook_domain::{
    Outcome, PrimaryFields, ProcessingResult, Provider, Redaction, WebhookEvent, WebhookRequest,
    UNAUTHENTICATED_BODY_KEPT,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// A webhook request as the HTTP adapter read it, secrets still in place.
#[derive(Debug)]
pub struct Inbound {
    /// The `{provider}` path segment.
    pub provider: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    /// At most `server.max_body_bytes` bytes; the ingest service takes it over.
    pub body: Vec<u8>,
    /// The body was longer than the limit (and `body` holds its first part).
    pub oversized: bool,
    /// The body did not arrive within `server.body_read_timeout_secs` (and `body`
    /// holds what did).
    pub timed_out: bool,
    pub remote_addr: Option<String>,
}

/// What to answer the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Accepted {
        event_id: String,
    },
    Duplicate {
        event_id: String,
    },
    Ignored {
        event_id: Option<String>,
        reason: ProcessingResult,
    },
    Rejected {
        status: u16,
        code: ProcessingResult,
        message: String,
    },
    /// Refused without a record: too many requests from this address failed
    /// authentication (`limits.rejected_per_ip_per_minute`).
    RateLimited {
        retry_after: std::time::Duration,
    },
}

impl Reply {
    /// The `processing_result` this reply stands for (a metrics label).
    pub fn result(&self) -> &'static str {
        match self {
            Reply::Accepted { .. } => ProcessingResult::Accepted.as_str(),
            Reply::Duplicate { .. } => ProcessingResult::Duplicate.as_str(),
            Reply::Ignored { reason, .. } => reason.as_str(),
            Reply::Rejected { code, .. } => code.as_str(),
            Reply::RateLimited { .. } => ProcessingResult::RateLimited.as_str(),
        }
    }

    /// The event id the reply names, if any.
    pub fn event_id(&self) -> Option<&str> {
        match self {
            Reply::Accepted { event_id } | Reply::Duplicate { event_id } => Some(event_id),
            Reply::Ignored { event_id, .. } => event_id.as_deref(),
            Reply::Rejected { .. } | Reply::RateLimited { .. } => None,
        }
    }

    fn rejected(outcome: &Outcome) -> Self {
        Reply::Rejected {
            status: outcome.http_status,
            code: outcome.result,
            message: outcome
                .error
                .clone()
                .unwrap_or_else(|| outcome.result.as_str().to_owned()),
        }
    }
}

enum Verdict {
    Admit(Box<WebhookEvent>),
    Ignore {
        event_id: Option<String>,
        result: ProcessingResult,
        reason: String,
    },
    Reject(Outcome),
}

/// The forensic fields read from a body that may hold NUL, stored as text.
fn scrub_primary(primary: PrimaryFields) -> PrimaryFields {
    let clean = |field: Option<String>| field.map(|s| payhook_domain::text::without_nul(&s).into_owned());
    PrimaryFields {
        event_id: clean(primary.event_id),
        event_type: clean(primary.event_type),
        external_id: clean(primary.external_id),
        provider_status: clean(primary.provider_status),
        amount: primary.amount,
    }
}

/// Whether a rejection came before the request proved it is from a provider (a
/// wrong or missing credential, a provider path that does not exist, a method, size
/// or pace no provider uses): anyone on the internet can cause these.
fn unauthenticated(outcome: &Outcome) -> bool {
    matches!(outcome.http_status, 401 | 404 | 405 | 408 | 413)
}

fn reject(http_status: u16, result: ProcessingResult, message: impl Into<String>) -> Verdict {
    Verdict::Reject(Outcome {
        http_status,
        result,
        error: Some(message.into()),
    })
}

/// How many forensic rows of unauthenticated requests are written at once.
const UNAUTHENTICATED_WRITERS: usize = 2;

/// Where forensic records go: the store, else (when enabled) the fallback file.
pub struct ForensicRecords {
    pub log: Arc<dyn ForensicLog>,
    pub fallback: Option<FallbackLog>,
}

/// What one request may cost: store time, and records of unauthenticated requests.
pub struct IngestLimits {
    /// How long one store call may take before the request is answered 503.
    pub store_timeout: Duration,
    /// How many unauthenticated requests one address may have recorded.
    pub rejection_limit: Arc<RejectionLimit>,
}

pub struct IngestService {
    sources: HashMap<Provider, Arc<dyn WebhookSource>>,
    /// The secret header names and query parameters of every registered provider.
    redaction: Redaction,
    forensic: Arc<dyn ForensicLog>,
    /// Writes accepted deliveries, many per transaction, and hands them to the worker.
    group_commit: GroupCommit,
    /// Holds the hashes of per-payment callback tokens.
    payments: Arc<dyn PaymentStore>,
    clock: Arc<dyn Clock>,
    /// Takes forensic records the store refused, when enabled.
    fallback: Option<FallbackLog>,
    /// How long one store call may take before the request is answered 503.
    store_timeout: Duration,
    /// How many unauthenticated requests one address may have recorded.
    rejection_limit: Arc<RejectionLimit>,
    /// The runtime the store's connections belong to (the one that built this).
    runtime: tokio::runtime::Handle,
    /// Forensic writes of unauthenticated requests in flight at once.
    unauthenticated_writes: tokio::sync::Semaphore,
}

impl IngestService {
    /// Call it inside the tokio runtime the stores live on: store calls run there.
    pub fn new(
        sources: Vec<Arc<dyn WebhookSource>>,
        redaction: Redaction,
        records: ForensicRecords,
        group_commit: GroupCommit,
        payments: Arc<dyn PaymentStore>,
        clock: Arc<dyn Clock>,
        limits: IngestLimits,
    ) -> Self {
        let ForensicRecords {
            log: forensic,
            fallback,
        } = records;
        let sources = sources.into_iter().map(|s| (s.provider(), s)).collect();
        Self {
            sources,
            redaction,
            forensic,
            group_commit,
            payments,
            clock,
            fallback,
            store_timeout: limits.store_timeout,
            rejection_limit: limits.rejection_limit,
            runtime: tokio::runtime::Handle::current(),
            unauthenticated_writes: tokio::sync::Semaphore::new(UNAUTHENTICATED_WRITERS),
        }
    }

    /// `call`, or `StoreError::Unavailable` if the store has not answered within
    /// `store_timeout`.
    async fn within_timeout<T: Send + 'static>(
        &self,
        call: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        crate::api::store_call(&self.runtime, self.store_timeout, call).await
    }

    /// The body a provider expects in a 200 answer, if not the contract's JSON.
    pub fn acknowledgement(&self, provider: &str) -> Option<&'static str> {
        let provider = provider.parse::<Provider>().ok()?;
        self.sources.get(&provider)?.acknowledgement()
    }

    pub async fn receive(&self, inbound: Inbound) -> Reply {
        // Only real provider names become labels: the path segment is caller-chosen.
        let provider = inbound.provider.parse::<Provider>().map_or("unknown", |p| p.as_str());
        let started = std::time::Instant::now();
        let reply = self.handle(inbound).await;
        // The request's span (see `startup::telemetry`) carries the provider and the
        // event id, so this request can be followed to the event's application.
        let span = tracing::Span::current();
        span.record("provider", provider);
        if let Some(event_id) = reply.event_id() {
            span.record("event_id", event_id);
        }
        if let Reply::Accepted { .. } | Reply::Duplicate { .. } | Reply::Ignored { .. } = &reply {
            tracing::info!(result = reply.result(), "webhook acknowledged");
        }
        // From a body read to its answer: what a provider's timeout is measured against,
        // less the HTTP parsing before it.
        metrics::histogram!("payhook_webhook_ack_seconds", "provider" => provider)
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("payhook_webhooks_received_total", "provider" => provider, "result" => reply.result())
            .increment(1);
        reply
    }

    async fn handle(&self, mut inbound: Inbound) -> Reply {
        let received_at = self.clock.now();
        // The record owns the raw body; authentication and parsing borrow it from there
        // (no copy of the body on the ingest path).
        let body = std::mem::take(&mut inbound.body);
        let mut request = WebhookRequest::new(
            &inbound.provider,
            &inbound.method,
            &inbound.path,
            &inbound.query,
            inbound.headers.iter().cloned(),
            body,
            inbound.remote_addr.clone(),
            received_at,
            &self.redaction,
        );
        let delivery = Delivery {
            headers: &inbound.headers,
            query: &inbound.query,
            body: &request.body,
            received_at,
        };
        let (verdict, primary, token) =
            std::panic::catch_unwind(AssertUnwindSafe(|| self.classify(&inbound, &delivery))).unwrap_or_else(|_| {
                tracing::error!(provider = %inbound.provider, "panic while classifying a webhook");
                (
                    reject(500, ProcessingResult::InternalError, "internal error"),
                    PrimaryFields::default(),
                    None,
                )
            });
        request.primary = primary;
        let reply = AssertUnwindSafe(async {
            let verdict = match token {
                Some(token) => self.check_payment_token(&token).await.map_or_else(|v| v, |()| verdict),
                None => verdict,
            };
            match verdict {
                Verdict::Reject(outcome) if unauthenticated(&outcome) => {
                    self.refuse_unauthenticated(&request, &inbound, outcome).await
                }
                verdict => self.settle(&request, verdict).await,
            }
        })
        .catch_unwind()
        .await;
        match reply {
            Ok(reply) => reply,
            Err(_) => {
                tracing::error!(provider = %inbound.provider, "panic while storing a webhook");
                let outcome = Outcome {
                    http_status: 500,
                    result: ProcessingResult::InternalError,
                    error: Some("internal error".into()),
                };
                self.record(&request, outcome).await
            }
        }
    }

    /// Checks a per-payment callback token against the payment's stored hash, in
    /// constant time. An unknown payment gets the same 401 as a wrong token, so the
    /// answer tells nobody which payment ids exist.
    async fn check_payment_token(&self, presented: &PaymentToken) -> Result<(), Verdict> {
        let stored = match self
            .within_timeout({
                let (payments, id) = (self.payments.clone(), presented.payment_id);
                async move { payments.token_hashes(id).await }
            })
            .await
        {
            Ok(hashes) => hashes.and_then(|h| h.callback),
            Err(e) => {
                tracing::error!(error = %e, "cannot read a callback token hash");
                return Err(reject(
                    503,
                    ProcessingResult::StoreUnavailable,
                    "the callback could not be checked; retry later",
                ));
            }
        };
        let hash = hex::encode(Sha256::digest(presented.token.as_bytes()));
        match stored {
            Some(expected) if bool::from(hash.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
            _ => Err(reject(
                401,
                ProcessingResult::InvalidCallbackToken,
                "the callback token does not match",
            )),
        }
    }

    /// Everything that needs no I/O: size, provider, method, authenticity, parsing.
    /// For a provider authenticated by per-payment tokens, also the token to check.
    fn classify(&self, inbound: &Inbound, delivery: &Delivery<'_>) -> (Verdict, PrimaryFields, Option<PaymentToken>) {
        if inbound.timed_out {
            let msg = "the request body did not arrive within server.body_read_timeout_secs".to_owned();
            return (
                reject(408, ProcessingResult::RequestTimeout, msg),
                PrimaryFields::default(),
                None,
            );
        }
        if inbound.oversized {
            // The part read is all there is (none when Content-Length announced too much).
            let msg = "request body exceeds server.max_body_bytes".to_owned();
            return (
                reject(413, ProcessingResult::PayloadTooLarge, msg),
                PrimaryFields::default(),
                None,
            );
        }
        let Ok(provider) = inbound.provider.parse::<Provider>() else {
            let msg = format!("no provider is called {:?}", inbound.provider);
            return (
                reject(404, ProcessingResult::UnknownProvider, msg),
                PrimaryFields::default(),
                None,
            );
        };
        let Some(source) = self.sources.get(&provider) else {
            let msg = format!("provider {provider} is disabled on this gateway");
            return (
                reject(404, ProcessingResult::ProviderDisabled, msg),
                PrimaryFields::default(),
                None,
            );
        };
        let hostile = payhook_domain::text::may_hold_nul(delivery.body);
        let primary = source.primary_fields(delivery.body);
        let primary = if hostile { scrub_primary(primary) } else { primary };
        if !source.accepts_method(&inbound.method) {
            let msg = format!("{provider} webhooks are not delivered with {}", inbound.method);
            return (reject(405, ProcessingResult::MethodNotAllowed, msg), primary, None);
        }
        let authenticated = source.authenticate(delivery).and_then(|()| {
            (source.authentication() == Authentication::PaymentToken)
                .then(|| PaymentToken::from_query(delivery.query))
                .transpose()
        });
        let token = match authenticated {
            Ok(token) => token,
            Err(e) => {
                let verdict = match e {
                    AuthError::Missing(m) => reject(401, ProcessingResult::MissingSignature, m),
                    AuthError::Invalid(m) => reject(401, ProcessingResult::InvalidSignature, m),
                    AuthError::MissingToken(m) => reject(401, ProcessingResult::MissingCallbackToken, m),
                    AuthError::InvalidToken(m) => reject(401, ProcessingResult::InvalidCallbackToken, m),
                };
                return (verdict, primary, None);
            }
        };
        let verdict = match source.parse(delivery) {
            // Both stores take the event the same way (see `payhook_domain::text`).
            Ok(Parsed::Event(event)) if hostile => Verdict::Admit(payhook_domain::text::scrub_nul(event)),
            Ok(Parsed::Event(event)) => Verdict::Admit(event),
            Ok(Parsed::Ignored {
                event_id,
                result,
                reason,
            }) => Verdict::Ignore {
                event_id,
                result,
                reason,
            },
            Err(e) => reject(400, ProcessingResult::MalformedPayload, e.to_string()),
        };
        (verdict, primary, token)
    }

    async fn settle(&self, request: &WebhookRequest, verdict: Verdict) -> Reply {
        match verdict {
            Verdict::Reject(outcome) => self.record(request, outcome).await,
            Verdict::Ignore {
                event_id,
                result,
                reason,
            } => {
                let outcome = Outcome {
                    http_status: 200,
                    result,
                    error: Some(reason),
                };
                match self.keep(request, &outcome).await {
                    Ok(()) => Reply::Ignored {
                        event_id,
                        reason: outcome.result,
                    },
                    Err(()) => self.unavailable(),
                }
            }
            Verdict::Admit(event) => {
                let event_id = event.event_id.to_string();
                // The request stays here for the failure path; the batch gets a copy.
                match self.group_commit.admit(request.clone(), *event).await {
                    Ok(Admission::Accepted(_)) => Reply::Accepted { event_id },
                    Ok(Admission::Duplicate(_)) => Reply::Duplicate { event_id },
                    Err(e) => {
                        tracing::error!(error = %e, %event_id, "event not stored; asking the provider to retry");
                        let outcome = Outcome {
                            http_status: 503,
                            result: ProcessingResult::StoreUnavailable,
                            error: Some("the event could not be stored; retry later".into()),
                        };
                        self.record(request, outcome).await
                    }
                }
            }
        }
    }

    /// A request that did not prove it comes from a provider: recorded with at most
    /// the first 64 KiB of its body (with the full length and digest), unless its
    /// address has had too many recorded this minute; then refused with 429 and only
    /// counted (see `flood`).
    async fn refuse_unauthenticated(&self, request: &WebhookRequest, inbound: &Inbound, outcome: Outcome) -> Reply {
        let address = inbound
            .remote_addr
            .as_deref()
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            .map(|a| a.ip());
        if let Err(retry_after) = self.rejection_limit.admit(address, request) {
            return Reply::RateLimited { retry_after };
        }
        // Their rows take at most a few of the store's connections, so a burst of
        // them (2,000 slow clients timing out together) leaves the rest to providers.
        let Ok(Ok(_permit)) = tokio::time::timeout(self.store_timeout, self.unauthenticated_writes.acquire()).await
        else {
            return self.unavailable();
        };
        if request.body.len() > UNAUTHENTICATED_BODY_KEPT {
            let mut cut = request.clone();
            cut.cut_body(UNAUTHENTICATED_BODY_KEPT);
            return self.record(&cut, outcome).await;
        }
        self.record(request, outcome).await
    }

    /// Records a rejected request with its outcome and answers with that outcome.
    async fn record(&self, request: &WebhookRequest, outcome: Outcome) -> Reply {
        match self.keep(request, &outcome).await {
            Ok(()) => {
                tracing::info!(
                    provider = %request.provider,
                    status = outcome.http_status,
                    result = outcome.result.as_str(),
                    "webhook rejected"
                );
                Reply::rejected(&outcome)
            }
            Err(()) => self.unavailable(),
        }
    }

    /// Writes the forensic record to the store, else to the fallback file if enabled.
    /// `Err` when neither took it.
    async fn keep(&self, request: &WebhookRequest, outcome: &Outcome) -> Result<(), ()> {
        let write = {
            let (forensic, request, outcome) = (self.forensic.clone(), request.clone(), outcome.clone());
            async move { forensic.record(&request, &outcome).await }
        };
        let error: StoreError = match self.within_timeout(write).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        tracing::error!(%error, provider = %request.provider, "forensic log write failed");
        let Some(fallback) = &self.fallback else {
            return Err(());
        };
        fallback.append(request, outcome).await.map_err(|e| {
            tracing::error!(error = %e, "fallback log write failed too");
        })
    }

    /// Not even the forensic log took the request: ask the provider to retry, so
    /// nothing is acknowledged that was not recorded.
    fn unavailable(&self) -> Reply {
        Reply::Rejected {
            status: 503,
            code: ProcessingResult::StoreUnavailable,
            message: "the gateway cannot record webhooks right now; retry later".into(),
        }
    }
}
