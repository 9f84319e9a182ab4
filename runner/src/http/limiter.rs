//! Vendor rate limits, shared by every step and run of the process: one limiter per origin
//! (a vendor tenant), which every plugin request to it waits on in the gate.
//!
//! Two sources of pace. The operator's `network.rate_limits` (requests per minute, requests in
//! flight) for a host; and what the vendor says in its answers — `X-Rate-Limit-Remaining/-Reset`
//! (Okta), `x-ratelimit-remaining/-reset` (GitHub, Atlassian), `RateLimit-Remaining/-Reset`
//! (the IETF draft), `Retry-After` (Graph, Slack, Google, everyone on a 429). With a budget and
//! its reset known, requests go at once while plenty is left, and the last of it is spread
//! evenly over what is left of the window, so the vendor's limit is approached without being
//! crossed; a 429 closes the origin until the vendor's
//! `Retry-After` (or reset) and the gate sends the request again — a wait, never a failed step.
//! While the budget is unknown — the first request to an origin, and again each time the
//! vendor's window resets — one request goes alone and the others wait for its answer, which
//! says what the new window holds: a burst of steps (or everyone waiting out a 429) does not
//! land at once on a window that takes only a few.
//!
//! **Replicas.** Several processes on one database (`offramp serve` replicas, a CLI batch
//! beside them) call the same vendors, whose budget is per tenant. Each process divides the
//! operator's `per_minute` and `concurrency`, and what the vendor says is left, by the
//! processes driving runs right now — counted from the run leases in the database by every
//! heartbeat ([`ReplicaShare`]). An idle replica holds no lease and takes no share; one that
//! starts driving is counted at the next heartbeat (a third of the lease), and a 429 meanwhile
//! is waited out like any other.
//!
//! ```yaml
//! network:
//!   rate_limits:
//!     https://acme.okta.com: { per_minute: 600, concurrency: 20 }
//!     "https://*.googleapis.com": { per_minute: 1500 }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::pipeline::Origin;

/// One `network.rate_limits` entry as written.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per minute to this host, from every step of the process: `per_minute: 600`.
    #[serde(default)]
    pub per_minute: Option<u32>,
    /// Requests to this host in flight at once: `concurrency: 20`.
    #[serde(default)]
    pub concurrency: Option<u32>,
}

/// The longest a vendor may close an origin for, whatever it says (a bad header must not park
/// every step for a day).
const MAX_CLOSED: Duration = Duration::from_secs(15 * 60);
/// While the vendor says more than this many requests are left in its window, requests go at
/// once; the last ones are spread over what is left of the window. (Spreading a whole budget
/// would hold a single offboarding's few requests to GitHub's hourly average.)
const FREE_BUDGET: u64 = 20;
/// How long a request held for another's answer waits before it looks again (should that
/// request never have gone).
const LOOK_AGAIN: Duration = Duration::from_secs(1);
/// Closed for this long after a 429 that says nothing about when to come back.
const UNSTATED_CLOSED: Duration = Duration::from_secs(1);

/// How many processes share each vendor's budget, this one included (at least 1). The
/// engine's heartbeat keeps it current; every origin's limiter divides by it.
#[derive(Debug, Clone)]
pub struct ReplicaShare(Arc<AtomicU32>);

impl Default for ReplicaShare {
    fn default() -> Self {
        ReplicaShare(Arc::new(AtomicU32::new(1)))
    }
}

impl ReplicaShare {
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed).max(1)
    }

    pub fn set(&self, processes: u32) {
        self.0.store(processes.max(1), Ordering::Relaxed);
    }
}

/// Every origin's limiter, made on first use.
#[derive(Default)]
pub(crate) struct Limiters {
    rules: Vec<(Origin, RateLimitConfig)>,
    origins: Mutex<HashMap<String, Arc<OriginLimiter>>>,
    share: ReplicaShare,
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters").field("rules", &self.rules.len()).finish()
    }
}

impl Limiters {
    pub(crate) fn new(rules: Vec<(Origin, RateLimitConfig)>) -> Self {
        Limiters { rules, origins: Mutex::default(), share: ReplicaShare::default() }
    }

    /// The processes every origin's budget is shared with.
    pub(crate) fn share(&self) -> &ReplicaShare {
        &self.share
    }

    /// The limiter of `url`'s origin (scheme, host, port), configured by the first rule that
    /// covers it.
    pub(crate) fn of(&self, url: &url::Url) -> Arc<OriginLimiter> {
        let key = url.origin().ascii_serialization();
        let Ok(mut origins) = self.origins.lock() else {
            return Arc::new(OriginLimiter::new(RateLimitConfig::default(), self.share.clone()));
        };
        origins
            .entry(key)
            .or_insert_with(|| {
                let config = self.rules.iter().find(|(o, _)| o.matches(url)).map(|(_, c)| *c).unwrap_or_default();
                Arc::new(OriginLimiter::new(config, self.share.clone()))
            })
            .clone()
    }
}

/// One origin's pace.
pub(crate) struct OriginLimiter {
    /// The operator's `concurrency`.
    slots: Option<Slots>,
    /// The operator's `per_minute`, as the gap between two requests (of all processes).
    gap: Option<Duration>,
    pace: Mutex<Pace>,
    share: ReplicaShare,
    /// Woken by every answer (and every request that ends without one).
    answered: tokio::sync::Notify,
}

/// The operator's `concurrency`, of which this process uses its share: the permits of the
/// others' shares are held (parked) by the limiter itself.
struct Slots {
    permits: Arc<Semaphore>,
    total: u32,
    parked: Arc<Mutex<Parked>>,
}

#[derive(Default)]
struct Parked {
    held: Vec<OwnedSemaphorePermit>,
    /// How many the others' shares need now.
    want: usize,
    /// Waiting in the semaphore's queue to be parked.
    queued: usize,
}

impl Slots {
    /// Parks or frees permits so this process uses `ceil(total / processes)`. A permit in use
    /// is parked by queueing for it like any request (the semaphore is fair), so a busy
    /// process gives the others' share back as its requests finish.
    fn rebalance(&self, processes: u32) {
        let mine = self.total.div_ceil(processes.max(1));
        let Ok(mut p) = self.parked.lock() else { return };
        p.want = (self.total - mine) as usize;
        let want = p.want;
        p.held.truncate(want);
        while p.held.len() + p.queued < want {
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => p.held.push(permit),
                Err(_) => {
                    p.queued += 1;
                    let (permits, parked) = (self.permits.clone(), self.parked.clone());
                    tokio::spawn(async move {
                        let permit = permits.acquire_owned().await;
                        if let (Ok(permit), Ok(mut p)) = (permit, parked.lock()) {
                            p.queued -= 1;
                            if p.held.len() < p.want {
                                p.held.push(permit);
                            }
                        }
                    });
                }
            }
        }
    }
}

#[derive(Default)]
struct Pace {
    /// When the operator's rate lets the next request go.
    next_configured: Option<Instant>,
    /// When the vendor's budget, spread over its window, lets the next request go.
    next_adaptive: Option<Instant>,
    /// After a 429: nothing goes before this.
    closed_until: Option<Instant>,
    /// The vendor's last word on its budget: requests left (less those sent since), and when
    /// the window resets.
    budget: Option<(u64, Instant)>,
    /// Requests sent and not yet answered.
    in_flight: u64,
    /// An answer came back since the budget was last unknown (the start, or a reset).
    settled: bool,
    /// A request booked to go first into a window that has not opened yet (after a 429, or
    /// once the budget is spent): the others wait for its answer instead of going with it.
    probe: Option<Instant>,
}

/// When a request may go.
enum Slot {
    At(Instant),
    /// The budget is unknown and a request is out (or booked) to learn it: wait for its
    /// answer, or look again at this time (if that request never goes).
    Hold(Instant),
}

/// A request's turn: holds its concurrency slot until the answer is in.
pub(crate) struct Turn {
    limiter: Arc<OriginLimiter>,
    _slot: Option<OwnedSemaphorePermit>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Ok(mut p) = self.limiter.pace.lock() {
            p.in_flight = p.in_flight.saturating_sub(1);
        }
        self.limiter.answered.notify_waiters();
    }
}

/// Why a request did not get its turn.
#[derive(Debug)]
pub(crate) struct Wait(pub Duration);

impl OriginLimiter {
    fn new(config: RateLimitConfig, share: ReplicaShare) -> Self {
        OriginLimiter {
            slots: config.concurrency.filter(|n| *n > 0).map(|n| Slots {
                permits: Arc::new(Semaphore::new(n as usize)),
                total: n,
                parked: Arc::default(),
            }),
            gap: config.per_minute.filter(|n| *n > 0).map(|n| Duration::from_secs(60) / n),
            pace: Mutex::default(),
            share,
            answered: tokio::sync::Notify::new(),
        }
    }

    /// Waits for this origin's turn. If the turn would come after `deadline`, waits for nothing
    /// and says how long it would have been.
    pub(crate) async fn turn(self: &Arc<Self>, deadline: Instant) -> Result<Turn, Wait> {
        let slot = match &self.slots {
            Some(s) => {
                s.rebalance(self.share.get());
                match tokio::time::timeout_at(deadline, s.permits.clone().acquire_owned()).await {
                    Ok(Ok(p)) => Some(p),
                    _ => return Err(Wait(Duration::ZERO)),
                }
            }
            None => None,
        };
        loop {
            let answered = self.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            match self.reserve(deadline)? {
                Slot::At(at) => {
                    // The turn exists before the wait: a request dropped while it waits (its
                    // step ended) still gives its place back.
                    let turn = Turn { limiter: self.clone(), _slot: slot };
                    tokio::time::sleep_until(at).await;
                    return Ok(turn);
                }
                Slot::Hold(again) => {
                    if tokio::time::timeout_at(deadline.min(again), answered).await.is_err() && again >= deadline {
                        return Err(Wait(Duration::ZERO));
                    }
                }
            }
        }
    }

    /// Books the earliest moment the next request may leave.
    fn reserve(&self, deadline: Instant) -> Result<Slot, Wait> {
        let now = Instant::now();
        let processes = self.share.get();
        let Ok(mut p) = self.pace.lock() else { return Ok(Slot::At(now)) };
        let mut at = now;
        // Whether the request would be the first into a window not open yet.
        let mut opens_window = false;
        if let Some(until) = p.closed_until {
            if until > now {
                at = until;
                opens_window = true;
            } else {
                p.closed_until = None;
            }
        }
        if let Some(next) = p.next_configured {
            at = at.max(next);
        }
        // The vendor's budget (this process's share of it): nothing left → wait for the reset;
        // otherwise spread what is left over the rest of the window.
        let mut adaptive_gap = None;
        if let Some((left, reset)) = p.budget {
            let mine = left / u64::from(processes);
            if reset <= at {
                // A new window: what it holds is learnt from the next answer.
                p.budget = None;
                p.next_adaptive = None;
                p.settled = false;
            } else if mine == 0 {
                at = at.max(reset);
                opens_window = true;
            } else if mine <= FREE_BUDGET {
                if let Some(next) = p.next_adaptive {
                    at = at.max(next);
                }
                adaptive_gap = Some((reset - at) / u32::try_from(mine).unwrap_or(u32::MAX));
            }
        }
        if at > deadline {
            return Err(Wait(at - now));
        }
        if !p.settled && p.in_flight > 0 {
            return Ok(Slot::Hold(now + LOOK_AGAIN));
        }
        if opens_window {
            match p.probe {
                Some(first) if first + LOOK_AGAIN > now => return Ok(Slot::Hold(first.max(now) + LOOK_AGAIN)),
                _ => p.probe = Some(at),
            }
        }
        if let Some(gap) = self.gap {
            p.next_configured = Some(at + gap * processes);
        }
        if let Some(gap) = adaptive_gap {
            p.next_adaptive = Some(at + gap);
        }
        if let Some((left, _)) = p.budget.as_mut() {
            *left = left.saturating_sub(1);
        }
        p.in_flight += 1;
        Ok(Slot::At(at))
    }

    /// Learns from an answer. For a 429 (or a 403 that is GitHub's rate limit), how long to
    /// wait before sending the request again.
    pub(crate) fn observe(&self, status: u16, headers: &HeaderMap) -> Option<Duration> {
        let now = Instant::now();
        let hold = self.learn(now, status, headers);
        self.answered.notify_waiters();
        hold
    }

    fn learn(&self, now: Instant, status: u16, headers: &HeaderMap) -> Option<Duration> {
        let Ok(mut p) = self.pace.lock() else { return None };
        p.settled = true;
        p.probe = None;
        let remaining = number(headers, &["x-rate-limit-remaining", "x-ratelimit-remaining", "ratelimit-remaining"]);
        let reset = reset_in(headers);
        if let (Some(left), Some(reset)) = (remaining, reset) {
            // Requests still in flight were counted by the vendor or will be: keep them out of
            // what is left.
            let left = left.saturating_sub(p.in_flight.saturating_sub(1));
            p.budget = Some((left, now + reset.min(MAX_CLOSED)));
        }
        let limited = status == 429 || (status == 403 && remaining == Some(0));
        if !limited {
            return None;
        }
        let wait = retry_after(headers).or(reset).unwrap_or(UNSTATED_CLOSED).min(MAX_CLOSED);
        let until = now + wait;
        p.closed_until = Some(p.closed_until.map_or(until, |c| c.max(until)));
        Some(wait)
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn number(headers: &HeaderMap, names: &[&str]) -> Option<u64> {
    names.iter().find_map(|n| header(headers, n)?.parse::<u64>().ok())
}

/// When the vendor's window resets, from now: an epoch time in seconds (Okta, GitHub,
/// Atlassian) or, under the IETF name or as a small number, seconds from now.
fn reset_in(headers: &HeaderMap) -> Option<Duration> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    if let Some(delta) = number(headers, &["ratelimit-reset"]) {
        return Some(Duration::from_secs(delta));
    }
    let v = number(headers, &["x-rate-limit-reset", "x-ratelimit-reset"])?;
    // An epoch (well past 2001) or a delta.
    Some(if v > 1_000_000_000 { Duration::from_secs(v.saturating_sub(now)) } else { Duration::from_secs(v) })
}

/// `Retry-After`: seconds, or an HTTP date (RFC 9110 §10.2.3). Every caller of a vendor
/// (the gate, the token endpoints, Slack's Web API client) reads it here.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = header(headers, "retry-after")?;
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(*n, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn epoch_in(secs: u64) -> String {
        (SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + secs).to_string()
    }

    #[test]
    fn every_vendors_rate_limit_headers_are_read() {
        let okta = headers(&[("x-rate-limit-remaining", "0".into()), ("x-rate-limit-reset", epoch_in(30))]);
        let r = reset_in(&okta).unwrap();
        assert!(r >= Duration::from_secs(29) && r <= Duration::from_secs(30), "{r:?}");
        let github = headers(&[("x-ratelimit-remaining", "12".into()), ("x-ratelimit-reset", epoch_in(600))]);
        assert_eq!(number(&github, &["x-ratelimit-remaining"]), Some(12));
        let ietf = headers(&[("ratelimit-remaining", "5".into()), ("ratelimit-reset", "7".into())]);
        assert_eq!(reset_in(&ietf), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&headers(&[("retry-after", "3".into())])), Some(Duration::from_secs(3)));
        let date = headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT".into())]);
        assert_eq!(retry_after(&date), Some(Duration::ZERO), "a date in the past: go now");
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_closes_the_origin_until_the_vendor_says() {
        let l = Arc::new(OriginLimiter::new(RateLimitConfig::default(), ReplicaShare::default()));
        let far = Instant::now() + Duration::from_secs(60);
        drop(l.turn(far).await.unwrap());
        let wait = l.observe(429, &headers(&[("retry-after", "2".into())]));
        assert_eq!(wait, Some(Duration::from_secs(2)));
        let before = Instant::now();
        drop(l.turn(far).await.unwrap());
        assert!(Instant::now() - before >= Duration::from_secs(2));
        // A turn that would come after the deadline is refused at once, saying how long.
        l.observe(429, &headers(&[("retry-after", "30".into())]));
        let Err(Wait(w)) = l.turn(Instant::now() + Duration::from_secs(5)).await else { panic!("no turn") };
        assert!(w >= Duration::from_secs(29), "{w:?}");
    }

    /// With 10 requests left in a 10-second window, requests go a second apart: the budget
    /// lasts the window instead of running out in its first second.
    #[tokio::test(start_paused = true)]
    async fn the_vendors_budget_is_spread_over_its_window() {
        let l = Arc::new(OriginLimiter::new(RateLimitConfig::default(), ReplicaShare::default()));
        let far = Instant::now() + Duration::from_secs(600);
        let t = l.turn(far).await.unwrap();
        l.observe(200, &headers(&[("ratelimit-remaining", "10".into()), ("ratelimit-reset", "10".into())]));
        drop(t);
        let start = Instant::now();
        for _ in 0..10 {
            drop(l.turn(far).await.unwrap());
        }
        let took = Instant::now() - start;
        assert!(took >= Duration::from_secs(8) && took <= Duration::from_secs(10), "{took:?}");
        // Spent: the next waits for the reset.
        drop(l.turn(far).await.unwrap());
        assert!(Instant::now() - start >= Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn the_operators_rate_and_concurrency_hold_for_every_step() {
        let l = Arc::new(OriginLimiter::new(
            RateLimitConfig { per_minute: Some(120), concurrency: Some(2) },
            ReplicaShare::default(),
        ));
        let far = Instant::now() + Duration::from_secs(600);
        let start = Instant::now();
        let a = l.turn(far).await.unwrap();
        l.observe(200, &HeaderMap::new());
        let _b = l.turn(far).await.unwrap();
        // Two in flight: a third waits for one to finish, then for its place in the rate.
        let l2 = l.clone();
        let third = tokio::spawn(async move { l2.turn(far).await.map(|_| Instant::now()) });
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!third.is_finished(), "held by the concurrency limit");
        drop(a);
        let at = third.await.unwrap().unwrap();
        assert!(at - start >= Duration::from_secs(3), "120/min: half a second apart at least");
    }

    /// Two processes driving runs: each goes at half the operator's rate, one request in
    /// flight of two, and half of what the vendor says is left; back to all of it alone.
    #[tokio::test(start_paused = true)]
    async fn the_budget_is_divided_by_the_processes_driving_runs() {
        let share = ReplicaShare::default();
        let l = Arc::new(OriginLimiter::new(
            RateLimitConfig { per_minute: Some(120), concurrency: Some(2) },
            share.clone(),
        ));
        let far = Instant::now() + Duration::from_secs(600);
        share.set(2);
        let start = Instant::now();
        let a = l.turn(far).await.unwrap();
        l.observe(200, &HeaderMap::new());
        let l2 = l.clone();
        let second = tokio::spawn(async move { l2.turn(far).await.map(|t| (Instant::now(), t)) });
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!second.is_finished(), "one of the two slots is the other process's");
        drop(a);
        let (at, b) = second.await.unwrap().unwrap();
        assert!(at - start >= Duration::from_secs(3));
        drop(b);
        // 120/min shared by two: a second apart.
        let t0 = Instant::now();
        drop(l.turn(far).await.unwrap());
        drop(l.turn(far).await.unwrap());
        assert!(Instant::now() - t0 >= Duration::from_secs(1), "{:?}", Instant::now() - t0);
        // Alone again: both slots, half a second apart.
        share.set(1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let x = l.turn(far).await.unwrap();
        let y = tokio::time::timeout(Duration::from_secs(1), l.turn(far)).await;
        assert!(y.is_ok(), "both slots are this process's again");
        drop((x, y));

        // The vendor's word: 30 left in 30 s, shared by three → 10 each, spread a few seconds apart.
        let v = Arc::new(OriginLimiter::new(RateLimitConfig::default(), share.clone()));
        share.set(3);
        let t = v.turn(far).await.unwrap();
        v.observe(200, &headers(&[("ratelimit-remaining", "30".into()), ("ratelimit-reset", "30".into())]));
        drop(t);
        let t0 = Instant::now();
        drop(v.turn(far).await.unwrap());
        drop(v.turn(far).await.unwrap());
        assert!(Instant::now() - t0 >= Duration::from_secs(2), "{:?}: alone it would go at once", Instant::now() - t0);
    }

    /// A burst to an origin whose budget is unknown sends one request; the rest wait for its
    /// answer. Again when the vendor's window resets: everyone who waited out a 429 does not
    /// land at once on the new window.
    #[tokio::test(start_paused = true)]
    async fn while_the_budget_is_unknown_one_request_goes_first() {
        let l = Arc::new(OriginLimiter::new(RateLimitConfig::default(), ReplicaShare::default()));
        let far = Instant::now() + Duration::from_secs(600);
        let first = l.turn(far).await.unwrap();
        let mut burst = Vec::new();
        for _ in 0..5 {
            let l = l.clone();
            burst.push(tokio::spawn(async move { l.turn(far).await.map(|t| (Instant::now(), t)) }));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(burst.iter().all(|t| !t.is_finished()), "held for the first answer");
        // The answer: plenty left in the window, so the rest go at once.
        l.observe(200, &headers(&[("ratelimit-remaining", "100".into()), ("ratelimit-reset", "10".into())]));
        drop(first);
        let mut turns = Vec::new();
        for t in burst {
            turns.push(t.await.unwrap().unwrap());
        }
        assert!(turns.iter().all(|(at, _)| *at - turns[0].0 < Duration::from_millis(10)));
        drop(turns);
        // Past the reset the budget is unknown again: one goes, the next waits for its answer.
        tokio::time::sleep(Duration::from_secs(11)).await;
        let probe = l.turn(far).await.unwrap();
        let l2 = l.clone();
        let next = tokio::spawn(async move { l2.turn(far).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!next.is_finished(), "the new window is learnt from one answer first");
        l.observe(200, &headers(&[("ratelimit-remaining", "99".into()), ("ratelimit-reset", "10".into())]));
        drop(probe);
        next.await.unwrap().unwrap();
    }

    /// A request dropped while it waits for its turn (its step ended) gives its place back:
    /// after the next reset the origin is learnt again from one request, not held forever.
    #[tokio::test(start_paused = true)]
    async fn a_turn_given_up_while_waiting_is_not_counted_as_in_flight() {
        let l = Arc::new(OriginLimiter::new(RateLimitConfig::default(), ReplicaShare::default()));
        let far = Instant::now() + Duration::from_secs(600);
        let t = l.turn(far).await.unwrap();
        l.observe(200, &headers(&[("ratelimit-remaining", "0".into()), ("ratelimit-reset", "5".into())]));
        drop(t);
        // Booked for the reset, then given up.
        let waiting = tokio::spawn({
            let l = l.clone();
            async move { l.turn(far).await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        waiting.abort();
        let _ = waiting.await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let next = tokio::time::timeout(Duration::from_secs(3), l.turn(far)).await;
        assert!(next.is_ok(), "the origin is not held for an answer that never comes");
    }
}
