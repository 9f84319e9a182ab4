//! The Slack Web API client: `chat.postMessage`, `chat.update`, `chat.postEphemeral`, and
//! replies to a `response_url`. Checks `ok`, waits out HTTP 429 `Retry-After`, retries
//! transient failures with backoff, and paces writes to a channel (Slack allows about one
//! message per second per channel). Nothing here is called on the engine's path: the engine
//! writes the store, and reporting reads it.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::{Value, json};

use crate::secrets::Secret;

/// Why a Slack call failed for good.
#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    /// Slack answered `ok: false` (e.g. `channel_not_found`, `invalid_auth`).
    #[error("Slack {method} failed: {error}")]
    Api { method: String, error: String },
    #[error("Slack {method} answered HTTP {status}")]
    Http { method: String, status: u16 },
    #[error("Slack {method} is unreachable: {message}")]
    Transport { method: String, message: String },
    #[error("Slack {method} is still rate limited after {attempts} attempts")]
    RateLimited { method: String, attempts: u32 },
    #[error("refusing to post to a response_url outside Slack: {0}")]
    ForeignResponseUrl(String),
}

/// Settings of the client.
#[derive(Debug, Clone)]
pub struct SlackApiConfig {
    /// `https://slack.com/api` (tests: a mock).
    pub base_url: String,
    /// Writes per second to one channel.
    pub channel_rate: NonZeroU32,
    /// Attempts per call, the first included.
    pub attempts: u32,
    /// The longest `Retry-After` honoured before giving up on a call.
    pub max_retry_after: Duration,
}

impl Default for SlackApiConfig {
    fn default() -> Self {
        SlackApiConfig {
            base_url: "https://slack.com/api".into(),
            channel_rate: NonZeroU32::MIN,
            attempts: 5,
            max_retry_after: Duration::from_secs(120),
        }
    }
}

/// A Slack Web API client with the bot token.
#[derive(Clone)]
pub struct SlackApi {
    client: reqwest::Client,
    token: Secret,
    config: SlackApiConfig,
    pacer: Arc<DefaultKeyedRateLimiter<String>>,
    /// Origins a `response_url` may have: Slack's hooks host and the API's own origin.
    response_origins: Vec<String>,
}

/// What one HTTP exchange came to.
enum Attempt {
    Done(Value),
    Retry { after: Option<Duration>, why: SlackError },
    Fail(SlackError),
}

impl SlackApi {
    pub fn new(token: Secret, config: SlackApiConfig) -> Result<Self, SlackError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SlackError::Transport { method: "client".into(), message: e.to_string() })?;
        let mut response_origins = vec!["https://hooks.slack.com".to_string()];
        if let Ok(u) = url::Url::parse(&config.base_url) {
            response_origins.push(u.origin().ascii_serialization());
        }
        let pacer = Arc::new(RateLimiter::keyed(Quota::per_second(config.channel_rate)));
        Ok(SlackApi { client, token, config, pacer, response_origins })
    }

    /// Waits until `channel` may take another write.
    pub async fn pace(&self, channel: &str) {
        self.pacer.until_key_ready(&channel.to_string()).await;
    }

    /// Calls a Web API method with a JSON body; returns the response when `ok`.
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, SlackError> {
        let url = format!("{}/{method}", self.config.base_url.trim_end_matches('/'));
        self.with_retries(method, || {
            self.client
                .post(&url)
                .bearer_auth(self.token.expose())
                .header("content-type", "application/json; charset=utf-8")
                .body(body.to_string())
        })
        .await
    }

    /// Posts to a channel (or a thread); returns the message's `ts`.
    pub async fn post_message(
        &self,
        channel: &str,
        text: &str,
        blocks: Option<&Value>,
        thread_ts: Option<&str>,
    ) -> Result<String, SlackError> {
        let mut body = json!({ "channel": channel, "text": text, "unfurl_links": false });
        if let Some(b) = blocks {
            body["blocks"] = b.clone();
        }
        if let Some(t) = thread_ts {
            body["thread_ts"] = json!(t);
        }
        let v = self.call("chat.postMessage", &body).await?;
        v.get("ts")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| SlackError::Api { method: "chat.postMessage".into(), error: "the answer has no ts".into() })
    }

    /// Replaces a message's text and blocks.
    pub async fn update(&self, channel: &str, ts: &str, text: &str, blocks: &Value) -> Result<(), SlackError> {
        self.call("chat.update", &json!({ "channel": channel, "ts": ts, "text": text, "blocks": blocks })).await?;
        Ok(())
    }

    /// Answers through an interaction's or command's `response_url`.
    pub async fn respond(&self, response_url: &str, body: &Value) -> Result<(), SlackError> {
        let origin = url::Url::parse(response_url).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
        if !self.response_origins.contains(&origin) {
            return Err(SlackError::ForeignResponseUrl(origin));
        }
        self.with_retries("response_url", || {
            self.client.post(response_url).header("content-type", "application/json").body(body.to_string())
        })
        .await
        .map(|_| ())
    }

    async fn with_retries(
        &self,
        method: &str,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Value, SlackError> {
        let mut delays = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(250))
            .with_max_delay(Duration::from_secs(8))
            .with_jitter()
            .with_max_times(self.config.attempts.saturating_sub(1) as usize)
            .build();
        let mut attempts = 0;
        loop {
            attempts += 1;
            // A new message may have been posted even though the answer was lost or a 5xx: posting
            // again could duplicate it, so `chat.postMessage` is retried only when Slack surely
            // did not take it (no connection, or rate limited). Updates are safe to repeat.
            let repeatable = method != "chat.postMessage";
            let outcome = match request().send().await {
                Ok(resp) => match self.read(method, resp).await {
                    Attempt::Retry { why, .. } if !repeatable && !matches!(why, SlackError::RateLimited { .. }) => {
                        Attempt::Fail(why)
                    }
                    other => other,
                },
                Err(e) if repeatable || e.is_connect() => Attempt::Retry {
                    after: None,
                    why: SlackError::Transport { method: method.into(), message: e.without_url().to_string() },
                },
                Err(e) => {
                    Attempt::Fail(SlackError::Transport { method: method.into(), message: e.without_url().to_string() })
                }
            };
            match outcome {
                Attempt::Done(v) => return Ok(v),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry { after, why } => {
                    let Some(backoff) = delays.next() else {
                        return Err(match why {
                            SlackError::RateLimited { .. } => {
                                SlackError::RateLimited { method: method.into(), attempts }
                            }
                            other => other,
                        });
                    };
                    let wait = after.map_or(backoff, |a| a.max(backoff / 4));
                    if wait > self.config.max_retry_after {
                        return Err(SlackError::RateLimited { method: method.into(), attempts });
                    }
                    tracing::warn!(target: "offramp::slack", method, attempt = attempts, wait_ms = wait.as_millis() as u64, error = %why, "retrying Slack call");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn read(&self, method: &str, resp: reqwest::Response) -> Attempt {
        let status = resp.status().as_u16();
        let retry_after = crate::http::limiter::retry_after(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        if status == 429 {
            return Attempt::Retry {
                after: Some(retry_after.unwrap_or(Duration::from_secs(1))),
                why: SlackError::RateLimited { method: method.into(), attempts: 0 },
            };
        }
        if status >= 500 {
            return Attempt::Retry { after: retry_after, why: SlackError::Http { method: method.into(), status } };
        }
        if status >= 400 {
            return Attempt::Fail(SlackError::Http { method: method.into(), status });
        }
        // response_url answers `ok` as plain text, or JSON with `ok`.
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            return if method == "response_url" {
                Attempt::Done(Value::Null)
            } else {
                Attempt::Fail(SlackError::Api { method: method.into(), error: "the answer is not JSON".into() })
            };
        };
        match v.get("ok").and_then(Value::as_bool) {
            Some(true) => Attempt::Done(v),
            _ => {
                let error = v.get("error").and_then(Value::as_str).unwrap_or("unknown_error").to_string();
                match error.as_str() {
                    "ratelimited" => Attempt::Retry {
                        after: Some(retry_after.unwrap_or(Duration::from_secs(1))),
                        why: SlackError::RateLimited { method: method.into(), attempts: 0 },
                    },
                    "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
                        Attempt::Retry { after: retry_after, why: SlackError::Api { method: method.into(), error } }
                    }
                    _ => Attempt::Fail(SlackError::Api { method: method.into(), error }),
                }
            }
        }
    }
}
