//! The plugin's only door out: every HTTP request a plugin makes, through `offramp:plugin/http`
//! or through `wasi:http/outgoing-handler`, is checked and sent here, in [`Gate::send`].
//!
//! Policy, in order: request count cap → URL parses, http(s) only → origin is in the step's
//! `allow:` (and in the operator's `network.allow`) → request body cap → an address written as
//! the host must be public unless the operator allows that host → dry run holds back mutating
//! methods → plugin headers for credential hosts are scrubbed and the credential injected →
//! sent with a timeout inside the step's deadline; a host name is resolved by
//! [`policy::CheckedResolver`], which checks every address and hands the connector only those
//! (no second lookup to rebind) → no redirects followed (3xx goes back to the plugin, whose
//! next request comes through here again) → response body capped → secrets scrubbed from the
//! response.

mod address;
mod headers;
pub mod limiter;
pub mod policy;
mod record;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;

use headers::{check_headers, is_credential_header, is_hop_by_hop, is_negotiation_header};
pub use policy::{NetworkConfig, NetworkPolicy};
pub(crate) use record::Recorder;
pub use record::RequestRecord;
use record::{Journal, RECORD_SLACK, SHOWN_OUTCOME_CHARS, SHOWN_URL_CHARS, is_mutating};

use crate::credentials::{CredentialError, Minter, Scheme, Token};
use crate::pipeline::{CredentialPlan, Grant};
use crate::secrets::{Redactor, Secret};
use crate::text::truncate;

/// A request as the plugin wrote it.
#[derive(Debug, Clone)]
pub(crate) struct OutgoingRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// The body was already counted against the transfer budget (wasi:http buffers it first).
    pub body_charged: bool,
}

/// A buffered response.
#[derive(Debug, Clone)]
pub(crate) struct IncomingResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum HttpFailure {
    #[error("denied: {0}")]
    Denied(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("timed out")]
    Timeout,
    #[error("transport error: {0}")]
    Transport(String),
    #[error("response larger than {0} bytes")]
    TooLarge(u64),
    #[error("request body larger than {0} bytes")]
    RequestTooLarge(u64),
    #[error("not sent (dry run)")]
    DryRun,
}

/// Per-step-attempt caps on HTTP use (the operator's `network.limits`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HttpLimits {
    /// Requests per attempt (default 100).
    pub max_requests: u32,
    /// Largest request body (default 1 MiB).
    pub max_request_bytes: u64,
    /// Largest response body (default 4 MiB).
    pub max_response_bytes: u64,
    /// Longest single request (default 30 s), never past the step's own deadline.
    pub max_request_timeout: Duration,
    /// Longest URL (default 8 KiB).
    pub max_url_bytes: u64,
    /// Most headers on a request or a response (default 100).
    pub max_headers: u32,
    /// Largest total of header names and values on a request or a response (default 64 KiB).
    pub max_header_bytes: u64,
    /// Request and response bodies one attempt may move in all (default 32 MiB): what bounds
    /// the host memory a step's HTTP can hold at once.
    pub max_transfer_bytes: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_requests: 100,
            max_request_bytes: 1024 * 1024,
            max_response_bytes: 4 * 1024 * 1024,
            max_request_timeout: Duration::from_secs(30),
            max_url_bytes: 8 * 1024,
            max_headers: 100,
            max_header_bytes: 64 * 1024,
            max_transfer_bytes: 32 * 1024 * 1024,
        }
    }
}

impl HttpLimits {
    /// How many requests an attempt's record keeps in full; past that they are only counted.
    pub fn max_records(&self) -> usize {
        self.max_requests as usize + RECORD_SLACK
    }
}

/// The process's HTTP client for plugin traffic, built once with the operator's policy.
#[derive(Clone)]
pub struct GateClient {
    client: reqwest::Client,
    /// For the `host:port` entries of `network.allow_private` (when there are any): its resolver
    /// lets those hosts have private addresses, and the gate only sends it requests to those
    /// exact ports.
    ported: Option<reqwest::Client>,
    policy: Arc<NetworkPolicy>,
    /// Each vendor origin's pace, shared by every gate (every step and run) of the process.
    limiters: Arc<limiter::Limiters>,
}

impl GateClient {
    /// No redirects, no cookies, no proxy from the environment, and every host name resolved
    /// through the policy's address check. Fails (rather than falling back to a default client
    /// that would follow redirects) when TLS cannot be set up.
    pub fn new(policy: NetworkPolicy) -> Result<GateClient, reqwest::Error> {
        let policy = Arc::new(policy);
        let build = |ported: bool| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .dns_resolver(Arc::new(policy::CheckedResolver { policy: policy.clone(), ported }))
                .user_agent(concat!("offramp/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(10))
                .build()
        };
        let ported = if policy.allow_private.iter().any(|p| p.port.is_some()) { Some(build(true)?) } else { None };
        let limiters = Arc::new(limiter::Limiters::new(policy.rate_limits.clone()));
        Ok(GateClient { client: build(false)?, ported, policy, limiters })
    }

    pub fn policy(&self) -> &NetworkPolicy {
        &self.policy
    }

    /// How many processes this one shares every vendor's rate limit with (itself included).
    pub fn replica_share(&self) -> &limiter::ReplicaShare {
        self.limiters.share()
    }

    /// The client for a request to `url` (a plugin's, or one the host makes itself, to a token
    /// endpoint): the one whose resolver lets a `host:port` entry of `network.allow_private`
    /// through on that port. A host written as an address never reaches the resolver, so it is
    /// checked here; so is a name that only looks like a number (`2130706433` where the URL
    /// parser left it alone). `Err` says why the address is refused.
    pub(crate) fn for_url(&self, url: &url::Url) -> Result<&reqwest::Client, String> {
        let host = url.host_str().unwrap_or("").to_ascii_lowercase();
        let port = url.port_or_known_default().unwrap_or(0);
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(d)) => address::numeric_host(d),
            None => None,
        };
        if let Some(ip) = literal
            && let Some(why) = self.policy.check_address(&host, port, ip)
        {
            return Err(why);
        }
        Ok(match &self.ported {
            Some(ported) if self.policy.private_port_ok(&host, port) => ported,
            _ => &self.client,
        })
    }
}

/// A credential resolved for one step attempt: a static secret, or a minted token (replaced
/// when the API refuses it).
pub(crate) struct Injection {
    pub rule: CredentialPlan,
    current: Mutex<Current>,
    minter: Option<Arc<Minter>>,
    /// A refused token is refreshed once per attempt, not once per request: an API that keeps
    /// answering 401 (a missing permission) does not make every request mint.
    refreshed: std::sync::atomic::AtomicBool,
}

#[derive(Clone)]
enum Current {
    Fixed(Secret),
    Minted(Token),
}

/// What goes on one request: the header, its value, and a DPoP proof.
struct Presented {
    name: HeaderName,
    value: HeaderValue,
    proof: Option<String>,
    /// The token sent (a 401 refreshes this one, not whatever is current by then).
    token: Option<Secret>,
}

impl Injection {
    pub(crate) fn fixed(rule: CredentialPlan, value: Secret) -> Self {
        Injection { rule, current: Mutex::new(Current::Fixed(value)), minter: None, refreshed: Default::default() }
    }

    pub(crate) fn minted(rule: CredentialPlan, minter: Arc<Minter>, token: Token) -> Self {
        Injection {
            rule,
            current: Mutex::new(Current::Minted(token)),
            minter: Some(minter),
            refreshed: Default::default(),
        }
    }

    fn current(&self) -> Option<Current> {
        self.current.lock().ok().map(|c| c.clone())
    }

    /// The header as sent: the rule's `format` with a static secret in it; a minted token as
    /// OAuth presents it (`Authorization: Bearer …` or `DPoP …`).
    fn header_of(&self, current: &Current) -> (String, String) {
        match current {
            Current::Fixed(value) => (self.rule.header.clone(), self.rule.format.replace("{secret}", value.expose())),
            Current::Minted(t) => {
                let scheme = match t.scheme {
                    Scheme::Bearer => "Bearer",
                    Scheme::Dpop => "DPoP",
                };
                ("Authorization".into(), format!("{scheme} {}", t.value.expose()))
            }
        }
    }

    /// The values to scrub: the secret or token, and the header value it was formatted into.
    fn values(&self) -> Vec<String> {
        let Some(current) = self.current() else { return Vec::new() };
        let raw = match &current {
            Current::Fixed(v) => v.expose().to_string(),
            Current::Minted(t) => t.value.expose().to_string(),
        };
        vec![raw, self.header_of(&current).1]
    }

    fn present(&self, method: &str, url: &url::Url) -> Result<Presented, HttpFailure> {
        let current = self.current().ok_or_else(|| HttpFailure::Invalid("credential state poisoned".into()))?;
        let (name, value) = self.header_of(&current);
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HttpFailure::Invalid("bad credential header".into()))?;
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| HttpFailure::Invalid("the secret cannot be used in a header".into()))?;
        value.set_sensitive(true);
        let (proof, token) = match (&self.minter, &current) {
            (Some(m), Current::Minted(t)) => {
                (m.proof(t, method, url).map_err(HttpFailure::Invalid)?, Some(t.value.clone()))
            }
            _ => (None, None),
        };
        Ok(Presented { name, value, proof, token })
    }

    /// A minted token near its end (an attempt can outlive it) is renewed before it is sent.
    /// Whether it was replaced.
    async fn ensure_fresh(&self) -> Result<bool, CredentialError> {
        let (Some(minter), Some(Current::Minted(t))) = (&self.minter, self.current()) else { return Ok(false) };
        if t.fresh() {
            return Ok(false);
        }
        let new = minter.token().await?;
        let replaced = new.value != t.value;
        if let Ok(mut c) = self.current.lock() {
            *c = Current::Minted(new);
        }
        Ok(replaced)
    }

    /// After a 401 for `sent`: a fresh token (the minter shares it with every other request).
    /// `None` when there is nothing to refresh: a static secret, or already refreshed once in
    /// this attempt.
    async fn refresh(&self, sent: &Secret) -> Option<Result<(), CredentialError>> {
        let minter = self.minter.as_ref()?;
        if self.refreshed.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return None;
        }
        Some(minter.refresh(sent).await.map(|t| {
            if let Ok(mut c) = self.current.lock() {
                *c = Current::Minted(t);
            }
        }))
    }
}

/// The checkpoint for one step attempt.
pub(crate) struct Gate {
    client: GateClient,
    allow: Vec<Grant>,
    injections: Vec<Injection>,
    /// Scrubs every credential value this attempt has held (a refreshed token joins it).
    redactor: std::sync::RwLock<Redactor>,
    scrubbed: Mutex<Vec<String>>,
    /// A token that could not be refreshed mid-attempt: the step fails with this, not with
    /// whatever the plugin made of the refused request.
    credential_failure: Mutex<Option<CredentialError>>,
    dry_run: bool,
    deadline: Mutex<Instant>,
    journal: Mutex<Journal>,
    /// Body bytes (request and response) moved so far in this attempt.
    transferred: AtomicU64,
    recorder: Option<Arc<dyn Recorder>>,
}

impl Gate {
    pub(crate) fn new(
        http: &GateClient,
        allow: Vec<Grant>,
        injections: Vec<Injection>,
        dry_run: bool,
        deadline: Instant,
    ) -> Self {
        let values: Vec<String> = injections.iter().flat_map(Injection::values).collect();
        let redactor = Redactor::with_values(values.clone());
        Gate {
            client: http.clone(),
            allow,
            injections,
            redactor: std::sync::RwLock::new(redactor),
            scrubbed: Mutex::new(values),
            credential_failure: Mutex::new(None),
            dry_run,
            deadline: Mutex::new(deadline),
            journal: Mutex::new(Journal::default()),
            transferred: AtomicU64::new(0),
            recorder: None,
        }
    }

    /// Writes each mutating request to `recorder` before it is sent, and its answer after.
    pub(crate) fn with_recorder(mut self, recorder: Arc<dyn Recorder>) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// Starts the step's clock again, `timeout` from now: called once the attempt got its
    /// sandbox slot, so time spent waiting for admission is not taken from its requests.
    pub(crate) fn start_clock(&self, timeout: Duration) {
        if let Ok(mut d) = self.deadline.lock() {
            *d = Instant::now() + timeout;
        }
    }
    pub(crate) fn limits(&self) -> &HttpLimits {
        &self.client.policy.limits
    }

    /// Scrubs every credential this attempt has held so far.
    pub(crate) fn redactor(&self) -> Redactor {
        self.redactor.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// The credential that could not be had mid-attempt, if one could not.
    pub(crate) fn credential_failure(&self) -> Option<CredentialError> {
        self.credential_failure.lock().ok().and_then(|f| f.clone())
    }

    /// The step fails with this credential error whatever the plugin makes of the refusal.
    fn fail_credential(&self, e: CredentialError) -> HttpFailure {
        let shown = e.to_string();
        if let Ok(mut f) = self.credential_failure.lock() {
            *f = Some(e);
        }
        HttpFailure::Denied(shown)
    }

    /// A request sent again (after a token refresh or with a DPoP nonce): counted against the
    /// attempt's request cap, its body against the transfer budget.
    fn count_resend(&self, body_len: u64) -> Result<(), HttpFailure> {
        let cap = self.limits().max_requests;
        let over = self.journal.lock().map(|mut j| {
            j.sent += 1;
            j.sent > cap
        });
        if over.unwrap_or(true) {
            return Err(HttpFailure::Denied(format!(
                "the step's limit of {cap} requests is used up (`network.limits.max_requests`)"
            )));
        }
        self.charge(body_len)
    }

    /// A refreshed token: scrubbed from here on, with every earlier value.
    fn scrub_also(&self, values: Vec<String>) {
        let Ok(mut all) = self.scrubbed.lock() else { return };
        all.extend(values);
        let redactor = Redactor::with_values(all.clone());
        if let Ok(mut r) = self.redactor.write() {
            *r = redactor;
        }
    }

    /// Requests made so far: the first [`HttpLimits::max_records`] in full, the rest counted
    /// on the last record.
    pub(crate) fn journal(&self) -> Vec<RequestRecord> {
        let Ok(j) = self.journal.lock() else { return Vec::new() };
        let mut out = j.records.clone();
        let omitted = j.made.saturating_sub(out.len() as u64);
        if omitted > 0 {
            out.push(RequestRecord {
                method: "…".into(),
                url: String::new(),
                outcome: format!(
                    "{omitted} more requests, not recorded one by one (a step attempt's record keeps {})",
                    self.limits().max_records()
                ),
                credential: None,
                dry_run: false,
                attempt: None,
                omitted: Some(omitted),
            });
        }
        out
    }

    fn record(&self, rec: RequestRecord) {
        if let Ok(mut j) = self.journal.lock() {
            j.made += 1;
            if j.records.len() < self.limits().max_records() {
                j.records.push(rec);
            }
        }
    }

    /// Counts `n` more body bytes against the attempt's transfer budget.
    pub(crate) fn charge(&self, n: u64) -> Result<(), HttpFailure> {
        let cap = self.limits().max_transfer_bytes;
        let before = self.transferred.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > cap {
            return Err(HttpFailure::Denied(format!(
                "the step moved more than {cap} bytes of HTTP bodies in this attempt (`network.limits.max_transfer_bytes`)"
            )));
        }
        Ok(())
    }

    /// Checks and sends one request. This is the only place plugin traffic leaves the host.
    pub(crate) async fn send(&self, req: OutgoingRequest) -> Result<IncomingResponse, HttpFailure> {
        let method: String = req.method.trim().chars().take(32).collect::<String>().to_ascii_uppercase();
        let too_long = req.url.len() as u64 > self.limits().max_url_bytes;
        let url = if too_long { Err(url::ParseError::Overflow) } else { url::Url::parse(req.url.trim()) };
        let shown = match &url {
            Ok(u) => display_url(u),
            Err(_) => req.url.chars().take(SHOWN_URL_CHARS).collect(),
        };
        let mut rec = RequestRecord {
            method: method.clone(),
            url: truncate(&self.redactor().text(&shown), SHOWN_URL_CHARS),
            outcome: String::new(),
            credential: None,
            dry_run: false,
            attempt: None,
            omitted: None,
        };
        let mut written_ahead = None;
        let result = if too_long {
            Err(HttpFailure::Invalid(format!(
                "the URL is {} bytes, over the limit of {} (`network.limits.max_url_bytes`)",
                req.url.len(),
                self.limits().max_url_bytes
            )))
        } else {
            self.check_and_send(&method, url, req, &mut rec, &mut written_ahead).await
        };
        rec.outcome = match &result {
            // A note the gate left (`after a token refresh`) goes with the status.
            Ok(resp) if !rec.outcome.is_empty() => format!("{} ({})", resp.status, rec.outcome),
            Ok(resp) => resp.status.to_string(),
            Err(e) => truncate(&self.redactor().text(&e.to_string()), SHOWN_OUTCOME_CHARS),
        };
        if let (Some(ticket), Some(r)) = (written_ahead, &self.recorder) {
            r.answered(ticket, &rec).await;
        }
        self.record(rec);
        result
    }

    async fn check_and_send(
        &self,
        method: &str,
        url: Result<url::Url, url::ParseError>,
        req: OutgoingRequest,
        rec: &mut RequestRecord,
        written_ahead: &mut Option<u32>,
    ) -> Result<IncomingResponse, HttpFailure> {
        let limits = *self.limits();
        let sent = self.journal.lock().map(|j| j.sent).unwrap_or(u32::MAX);
        if sent >= limits.max_requests {
            return Err(HttpFailure::Denied(format!(
                "the step's limit of {} requests is used up (`network.limits.max_requests`)",
                limits.max_requests
            )));
        }
        let url = url.map_err(|e| HttpFailure::Invalid(format!("bad URL: {e}")))?;
        if url.scheme() != "https" && url.scheme() != "http" {
            return Err(HttpFailure::Denied(format!("scheme `{}` is not allowed", truncate(url.scheme(), 32))));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(HttpFailure::Invalid("credentials in the URL are not allowed".into()));
        }
        let port = url.port_or_known_default().unwrap_or(0);
        let origin = || format!("{}://{}:{port}", url.scheme(), url.host_str().unwrap_or(""));
        let grants: Vec<&Grant> = self.allow.iter().filter(|g| g.origin.matches(&url)).collect();
        if grants.is_empty() {
            return Err(HttpFailure::Denied(format!("{} is not in this step's `allow:` list", origin())));
        }
        if !grants.iter().any(|g| g.permits(method, &url)) {
            let granted = grants.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            return Err(HttpFailure::Denied(format!(
                "{method} {} is outside what this step's `allow:` grants for {}: {granted}",
                truncate(url.path(), SHOWN_URL_CHARS),
                origin()
            )));
        }
        let policy = &self.client.policy;
        if let Some(cap) = &policy.allow
            && !cap.iter().any(|o| o.matches(&url))
        {
            return Err(HttpFailure::Denied(format!("{} is outside the operator's `network.allow`", origin())));
        }
        let body_len = req.body.as_ref().map_or(0, Vec::len) as u64;
        if body_len > limits.max_request_bytes {
            return Err(HttpFailure::RequestTooLarge(limits.max_request_bytes));
        }
        check_headers(&req.headers, &limits, "request")?;
        // A host written as an address never reaches the resolver: checked here (see `for_url`).
        let client = self.client.for_url(&url).map_err(HttpFailure::Denied)?;
        let method_v = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| HttpFailure::Invalid(format!("bad method `{method}`")))?;
        // A plugin never sees a credential, so a request carrying one (in any encoding the
        // redactor knows) is an attempt to move it somewhere: refused, whatever the host.
        let redactor = self.redactor();
        let carries = redactor.finds(req.url.as_bytes())
            || req.headers.iter().any(|(n, v)| redactor.finds(n.as_bytes()) || redactor.finds(v.as_bytes()))
            || req.body.as_deref().is_some_and(|b| redactor.finds(b));
        if carries {
            return Err(HttpFailure::Denied(
                "the request carries a credential the host injects (or an encoding of it); plugins never hold credentials, so it is not sent".into(),
            ));
        }
        let injection = self.injections.iter().find(|i| i.rule.origin.matches(&url));
        rec.credential = injection.map(|i| i.rule.secret.clone());
        if self.dry_run && is_mutating(method) {
            rec.dry_run = true;
            return Err(HttpFailure::DryRun);
        }

        let mut headers = HeaderMap::new();
        for (name, value) in &req.headers {
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| HttpFailure::Invalid(format!("bad header name `{}`", truncate(name, 64))))?;
            if is_hop_by_hop(&name) {
                continue;
            }
            // The plugin may not supply (or override) a credential for a host we inject into,
            // nor choose how the answer is encoded or sliced: the host owns content
            // negotiation there, so every byte that comes back is checked for the credential.
            if let Some(inj) = injection
                && (name.as_str().eq_ignore_ascii_case(&inj.rule.header)
                    || is_credential_header(&name)
                    || is_negotiation_header(&name))
            {
                continue;
            }
            let value = HeaderValue::from_str(value)
                .map_err(|_| HttpFailure::Invalid(format!("bad value for header `{name}`")))?;
            headers.append(name, value);
        }
        let deadline = self.deadline.lock().map(|d| *d).unwrap_or_else(|_| Instant::now());
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(HttpFailure::Timeout);
        }
        if !req.body_charged {
            self.charge(body_len)?;
        }
        if let Ok(mut j) = self.journal.lock() {
            j.sent += 1;
        }
        // Written ahead: a mutating request is in the results table before it leaves, so an
        // attempt cut short (the process killed) still shows what it may have changed.
        if is_mutating(method)
            && let Some(r) = &self.recorder
        {
            let ticket = r.sending(rec).await.map_err(|e| {
                HttpFailure::Transport(format!("cannot record the request before sending it, so it was not sent: {e}"))
            })?;
            *written_ahead = Some(ticket);
        }
        let timeout = remaining.min(limits.max_request_timeout);
        let body = req.body.map(bytes::Bytes::from);
        let pace = self.client.limiters.of(&url);
        let send = async {
            // A minted token the API refuses (401 without another reason) is refreshed once per
            // attempt and the request sent again; a DPoP nonce the API asks for is used once.
            // Each resend counts as a request and moves its body again.
            let mut nonce_used = false;
            let (mut resp, proof) = loop {
                let mut headers = headers.clone();
                let mut proof = None;
                let mut sent_token = None;
                if let Some(inj) = injection {
                    match inj.ensure_fresh().await {
                        Ok(true) => self.scrub_also(inj.values()),
                        Ok(false) => {}
                        Err(e) => return Err(self.fail_credential(e)),
                    }
                    let p = inj.present(method, &url)?;
                    headers.insert(p.name, p.value);
                    if let Some(text) = p.proof {
                        let mut v =
                            HeaderValue::from_str(&text).map_err(|_| HttpFailure::Invalid("bad DPoP proof".into()))?;
                        v.set_sensitive(true);
                        headers.insert(HeaderName::from_static("dpop"), v);
                        proof = Some(text);
                    }
                    sent_token = p.token;
                }
                let mut builder = client.request(method_v.clone(), url.clone()).headers(headers).timeout(timeout);
                if let Some(body) = &body {
                    builder = builder.body(body.clone());
                }
                // The vendor's pace, shared by every step: wait for this origin's turn.
                let turn = pace.turn(deadline).await.map_err(|limiter::Wait(w)| {
                    HttpFailure::Transport(format!(
                        "rate limited: {} takes the next request in {} s, after this step's time is up",
                        url.origin().ascii_serialization(),
                        w.as_secs().max(1)
                    ))
                })?;
                let resp = builder.send().await.map_err(transport)?;
                let hold = pace.observe(resp.status().as_u16(), resp.headers());
                drop(turn);
                // A 429 is a wait: the request goes again once the vendor's window allows, as
                // long as that is within the step's time.
                if let Some(wait) = hold
                    && Instant::now() + wait < deadline
                {
                    self.count_resend(body_len)?;
                    rec.outcome = "after waiting out the vendor's rate limit".into();
                    continue;
                }
                let Some((inj, minter, sent)) =
                    injection.and_then(|i| Some((i, i.minter.as_ref()?, sent_token.as_ref()?)))
                else {
                    break (resp, proof);
                };
                // RFC 9449 §9: a resource server may hand out a nonce with any answer.
                if let Some(n) = resp.headers().get("dpop-nonce").and_then(|v| v.to_str().ok()) {
                    minter.set_api_nonce(n);
                }
                if resp.status() != reqwest::StatusCode::UNAUTHORIZED {
                    break (resp, proof);
                }
                let challenge = auth_error(resp.headers());
                let retry = match challenge.as_deref() {
                    Some("use_dpop_nonce") if !nonce_used && resp.headers().contains_key("dpop-nonce") => {
                        nonce_used = true;
                        true
                    }
                    // The token itself was refused (or no reason given): a new one may do.
                    None | Some("invalid_token") => match inj.refresh(sent).await {
                        Some(Ok(())) => {
                            self.scrub_also(inj.values());
                            rec.outcome = "after a token refresh".into();
                            true
                        }
                        Some(Err(e)) => return Err(self.fail_credential(e)),
                        None => false,
                    },
                    // A proof, scope or permission problem: a new token would not help.
                    Some(_) => false,
                };
                if !retry {
                    break (resp, proof);
                }
                self.count_resend(body_len)?;
            };
            // The proof went out with this request only: scrubbed from its answer too.
            let redactor = match proof {
                Some(p) => {
                    let mut values = self.scrubbed.lock().map(|v| v.clone()).unwrap_or_default();
                    values.push(p);
                    Redactor::with_values(values)
                }
                None => self.redactor(),
            };
            let status = resp.status().as_u16();
            if resp.headers().len() > limits.max_headers as usize {
                return Err(HttpFailure::Transport(format!(
                    "the response has {} headers, over the limit of {} (`network.limits.max_headers`)",
                    resp.headers().len(),
                    limits.max_headers
                )));
            }
            let mut header_bytes = 0u64;
            let mut headers: Vec<(String, String)> = Vec::with_capacity(resp.headers().len());
            for (n, v) in resp.headers() {
                header_bytes += (n.as_str().len() + v.len()) as u64;
                // A header whose name carries the credential cannot be shown redacted: dropped.
                if redactor.finds(n.as_str().as_bytes()) {
                    continue;
                }
                headers.push((n.as_str().to_string(), redactor.text(&String::from_utf8_lossy(v.as_bytes()))));
            }
            if header_bytes > limits.max_header_bytes {
                return Err(HttpFailure::Transport(format!(
                    "the response's headers are {header_bytes} bytes, over the limit of {} (`network.limits.max_header_bytes`)",
                    limits.max_header_bytes
                )));
            }
            if injection.is_some() {
                // reqwest has decoded gzip, deflate and brotli; anything still encoded, or a
                // slice of a body, cannot be checked for the credential as a whole.
                if let Some(enc) = resp.headers().get(reqwest::header::CONTENT_ENCODING)
                    && !enc.as_bytes().eq_ignore_ascii_case(b"identity")
                {
                    return Err(HttpFailure::Denied(format!(
                        "the response is encoded as `{}`, which offramp cannot check for the injected credential",
                        truncate(&String::from_utf8_lossy(enc.as_bytes()), 64)
                    )));
                }
                if status == 206 {
                    return Err(HttpFailure::Denied(
                        "a partial response (206) from a host with an injected credential is refused: offramp checks whole bodies for the credential".into(),
                    ));
                }
            }
            let cap = limits.max_response_bytes;
            if resp.content_length().is_some_and(|n| n > cap) {
                return Err(HttpFailure::TooLarge(cap));
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(transport)? {
                if (body.len() + chunk.len()) as u64 > cap {
                    return Err(HttpFailure::TooLarge(cap));
                }
                self.charge(chunk.len() as u64)?;
                body.extend_from_slice(&chunk);
            }
            let body = if redactor.is_empty() { body } else { redactor.bytes(&body) };
            headers.retain(|(n, _)| n != "content-length" && n != "content-encoding");
            Ok(IncomingResponse { status, headers, body })
        };
        // Each send has the request timeout; a token refresh between sends is bounded by the
        // step's remaining time (and the token endpoint's own timeout).
        tokio::time::timeout(remaining, send).await.map_err(|_| HttpFailure::Timeout)?
    }
}

/// The `error` of a `WWW-Authenticate` challenge (RFC 6750 §3, RFC 9449 §7.1), if it names one.
fn auth_error(headers: &HeaderMap) -> Option<String> {
    headers.get_all(reqwest::header::WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        let at = v.find("error=")?;
        let rest = v[at + 6..].trim_start_matches('"');
        Some(rest.split(['"', ',', ' ']).next().unwrap_or_default().to_string())
    })
}

fn transport(e: reqwest::Error) -> HttpFailure {
    if e.is_timeout() {
        return HttpFailure::Timeout;
    }
    match cause(&e) {
        Err(denied) => HttpFailure::Denied(denied),
        Ok(cause) => HttpFailure::Transport(cause),
    }
}

/// Why a request failed, without the URL reqwest's Display includes: the chain's innermost
/// cause, or (`Err`) the address rules' refusal if that is what stopped it.
pub(crate) fn cause(e: &reqwest::Error) -> Result<String, String> {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        if let Some(denied) = next.downcast_ref::<policy::AddressDenied>() {
            return Err(denied.0.clone());
        }
        cause = next;
    }
    Ok(cause.to_string())
}

fn display_url(url: &url::Url) -> String {
    format!(
        "{}://{}{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default(),
        url.path()
    )
}

#[cfg(test)]
mod tests;
