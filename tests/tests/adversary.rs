//! The adversarial suite: the hostile plugin (plugins/tests/adversary) tries every way out of the
//! sandbox in one run; each attempt must end as a failed step with a clear reason, nothing may
//! reach the internal service or leak the credential, and the same process must then run a
//! normal pipeline.
//!
//! Layout on loopback: the SaaS mock on 127.0.0.2 (the one private host the operator allows),
//! an "internal service" on 127.0.0.1 that must never be reached, and a collector (also on
//! 127.0.0.2) where the adversary sends whatever it captured.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use offramp::engine::{Engine, EngineConfig, StartRequest};
use offramp::http::NetworkPolicy;
use offramp::pipeline::LoadOptions;
use offramp::secrets::SecretSource;
use offramp::store::{RunStatus, SqliteStore, StepRecord, StepStatus};
use offramp_mock::{MockServer, MockState};

use common::TOKEN;

const SAAS_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Records every request it gets, headers and body, as text.
async fn collector() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap, body: String| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(format!("{headers:?} {body}"));
            "thanks"
        }
    });
    let listener = tokio::net::TcpListener::bind((SAAS_IP, 0)).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, app).into_future());
    (url, seen)
}

fn step(id: &str, with: &str, allow: &[String], extra: &str) -> String {
    let allow = allow.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ");
    format!(
        "  - id: {id}\n    uses: adversary\n    with: {with}\n    allow: [{allow}]\n    retry: {{ attempts: 1 }}\n    on_failure: continue\n{extra}"
    )
}

/// Loads `yaml` (written to `dir/NAME.yaml`) and an engine on a fresh SQLite database in
/// `dir`, with one secret and 127.0.0.2 (the mocks' address) the one private host allowed.
async fn hostile(
    dir: &std::path::Path,
    name: &str,
    yaml: &str,
    secret: (&str, &str),
) -> (offramp::pipeline::Plan, Engine) {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    let opts = LoadOptions { plugins_dir: PathBuf::from(offramp::TEST_PLUGINS_DIR), ..Default::default() };
    let plan = offramp::pipeline::load(&path, &opts).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let db = format!("sqlite://{}", dir.join("offramp.db").display());
    let store = Arc::new(SqliteStore::open(&db).await.unwrap());
    let secrets = SecretSource::fixed([(secret.0.to_string(), secret.1.to_string())]);
    let config =
        EngineConfig { network: NetworkPolicy::with_private_hosts(["127.0.0.2"]).unwrap(), ..Default::default() };
    (plan, Engine::new(store, common::sandbox(), secrets, config).unwrap())
}

#[tokio::test]
async fn every_escape_attempt_fails_with_a_clear_reason_and_the_host_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let saas = MockServer::start_on(SAAS_IP, MockState::okta(TOKEN)).await.unwrap();
    let internal = MockServer::start("internal-only").await.unwrap();
    let (collector, loot) = collector().await;
    let port = internal.addr.port();
    let s = saas.url();

    let fetch = |id: &str, host: &str| {
        let url = format!("http://{host}:{port}/latest/meta-data/");
        step(id, &format!("{{ attack: fetch, url: \"{url}\" }}"), &[format!("http://{host}:{port}")], "")
    };
    let mut yaml = String::from("version: 1\nname: hostile\nsteps:\n");
    for (id, host) in [
        ("loopback", "127.0.0.1"),
        ("metadata", "169.254.169.254"),
        ("private", "10.0.0.1"),
        ("ipv6_loopback", "[::1]"),
        ("hex", "0x7f000001"),
        ("decimal", "2130706433"),
        ("octal", "0177.0.0.1"),
        ("mapped", "[::ffff:127.0.0.1]"),
        ("name", "localhost"),
    ] {
        yaml += &fetch(id, host);
    }
    let internal_origin = format!("http://127.0.0.1:{port}");
    yaml += &step(
        "wasi_http",
        &format!("{{ attack: wasi_fetch, url: \"{internal_origin}/\" }}"),
        std::slice::from_ref(&internal_origin),
        "",
    );
    yaml += &step(
        "redirect",
        &format!("{{ attack: follow_redirect, url: \"{s}/__mock/redirect?to={internal_origin}/admin\" }}"),
        &[s.clone(), internal_origin.clone()],
        "",
    );
    yaml += &step(
        "steal",
        &format!("{{ attack: steal_credential, url: \"{s}/__echo/whoami\", collector: \"{collector}/loot\" }}"),
        &[s.clone(), collector.clone()],
        &format!(
            "    credentials:\n      - {{ host: \"{s}\", secret: OKTA_API_TOKEN, format: \"SSWS {{secret}}\" }}\n"
        ),
    );
    for (id, with, extra) in [
        ("spin", "{ attack: spin }", "    timeout: 1s\n"),
        ("memory_bomb", "{ attack: memory_bomb }", "    memory: 16MiB\n"),
        ("recursion", "{ attack: recursion }", ""),
        ("env", "{ attack: env }", ""),
        ("files", "{ attack: files }", ""),
        ("clock", "{ attack: clock }", ""),
        ("huge_output", "{ attack: huge_output, mb: 4 }", ""),
        ("flood", "{ attack: flood_logs }", ""),
        ("panic", "{ attack: panic }", ""),
        ("exit", "{ attack: exit }", ""),
        ("shadow_stack", "{ attack: shadow_stack }", ""),
    ] {
        yaml += &step(id, with, &[], extra);
    }
    yaml += &step("sockets", &format!("{{ attack: sockets, addr: \"127.0.0.1:{port}\" }}"), &[], "");
    let (plan, engine) = hostile(dir.path(), "hostile", &yaml, ("OKTA_API_TOKEN", TOKEN)).await;
    let opts = LoadOptions { plugins_dir: PathBuf::from(offramp::TEST_PLUGINS_DIR), ..Default::default() };
    let request = || StartRequest { inputs: Default::default(), requested_by: "test".into(), dry_run: false };
    let run = engine.start(&plan, request()).await.unwrap();
    let status = engine.drive(&run).await.unwrap();
    let steps: HashMap<String, StepRecord> =
        engine.store().steps(&run).await.unwrap().into_iter().map(|s| (s.step_id.clone(), s)).collect();

    let expect = |id: &str, needles: &[&str]| {
        let s = &steps[id];
        assert_eq!(s.status, StepStatus::Failed, "{id} must fail: {s:?}");
        let error = s.error.clone().unwrap_or_default();
        let trail = format!("{error} {}", s.requests);
        for n in needles {
            assert!(trail.contains(n), "{id}: expected `{n}` in: {trail}");
        }
    };
    let lo = "127.0.0.1 is a loopback address; offramp only connects to public addresses";
    expect("loopback", &[lo]);
    expect("hex", &[lo]);
    expect("decimal", &[lo]);
    expect("octal", &[lo]);
    expect("metadata", &["169.254.169.254 is a link-local address (this includes cloud metadata services)"]);
    expect("private", &["10.0.0.1 is a private address"]);
    expect("ipv6_loopback", &["[::1] is a loopback address"]);
    expect("mapped", &["is a loopback address"]);
    expect("name", &["localhost resolves to 127.0.0.1, a loopback address"]);
    expect("wasi_http", &["HttpRequestDenied", lo]);
    expect("redirect", &["\"outcome\":\"302\"", lo]);
    expect("steal", &["\"authorization\":\"[REDACTED]\"", "exfiltration answered 200"]);
    expect("spin", &["timed out after 1s"]);
    expect("memory_bomb", &["ran out of memory", "16 MiB"]);
    expect("recursion", &["ran out of stack"]);
    expect("env", &["blocked: 0 environment variables, 0 arguments"]);
    expect("files", &["blocked: /etc/passwd:"]);
    expect("clock", &["blocked: wall clock resolution 1s0ns, monotonic resolution 1000000ns"]);
    expect("huge_output", &["over the limit of 1048576 (`sandbox.max_output_bytes`)"]);
    expect("flood", &["flooded"]);
    expect("panic", &["the plugin crashed", "the adversary panics on purpose"]);
    expect("exit", &["the plugin called exit(1)", "the adversary leaves by the back door"]);
    expect("shadow_stack", &["the plugin ran out of stack", "its own stack in linear memory"]);
    expect("sockets", &["blocked: tcp 127.0.0.1", "access-denied", "udp 127.0.0.1", "dns: "]);
    assert_eq!(status, RunStatus::Failed, "steps failed, so the run did");

    // Nothing reached the internal service, however it was spelled.
    assert!(internal.state.requests().is_empty(), "{:?}", internal.state.requests());
    // The credential went only to its host, as the host injected it, not as the plugin set it.
    let seen = saas.state.requests();
    let echo: Vec<_> = seen.iter().filter(|r| r.path == "/__echo/whoami").collect();
    assert_eq!(echo.len(), 1);
    assert_eq!(echo[0].authorization.as_deref(), Some(format!("SSWS {TOKEN}").as_str()));
    // What the plugin captured and sent on was redacted; the collector never saw the token.
    let loot = loot.lock().unwrap().clone();
    assert_eq!(loot.len(), 1, "{loot:?}");
    assert!(loot[0].contains("[REDACTED]") && !loot[0].contains(TOKEN), "{loot:?}");
    assert!(!loot[0].contains("\"x-api-key\""), "the plugin's own x-api-key was dropped for the credential host");
    // Nor is it anywhere in the results table.
    let everything = format!("{:?} {:?}", steps, engine.store().events(&run).await.unwrap());
    assert!(!everything.contains(TOKEN));
    // Output caps: the flood's log is capped and says what it dropped.
    let flood = &steps["flood"].log;
    let dropped = |needle: &str| flood.iter().any(|l| l.contains(needle));
    assert!(dropped("more log lines dropped"), "{}", flood.len());
    assert!(dropped("stdout:") && dropped("more bytes dropped"), "stdout cut, and said so");
    assert!(flood.len() <= 1000 + 3 + 2 * 64, "{}", flood.len());

    // The same process then runs a normal pipeline.
    let normal = format!(
        r#"version: 1
name: normal
steps:
  - id: lookup
    uses: okta
    with: {{ action: lookup, org_url: "{s}", user: alice@example.com }}
    allow: ["{s}"]
    credentials:
      - {{ host: "{s}", secret: OKTA_API_TOKEN, format: "SSWS {{secret}}" }}
  - {{ id: echo, uses: testkit, with: {{ mode: echo, value: 1 }}, needs: [lookup] }}
"#
    );
    std::fs::write(dir.path().join("normal.yaml"), normal).unwrap();
    let plan = offramp::pipeline::load(&dir.path().join("normal.yaml"), &opts).unwrap();
    let run = engine.start(&plan, request()).await.unwrap();
    assert_eq!(engine.drive(&run).await.unwrap(), RunStatus::Succeeded);
}

/// A token with `/` and `+`, as base64 tokens have: JSON escaping changes how it looks.
const SLASHY: &str = "tok/3n+With/Sl4shes+and/Plus0123";

/// An allowed API that echoes what it was sent, as JSON with `/` escaped as `\/` (as PHP's
/// json_encode does), gzip-compressed when asked, and sliced when a `Range` asks for it.
/// Records the `Authorization` header it got, to prove there was a credential to steal.
async fn echo_api() -> (String, Arc<Mutex<Vec<String>>>) {
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let log = log.clone();
        async move {
            let echoed: std::collections::BTreeMap<String, String> = headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect();
            log.lock().unwrap().push(echoed.get("authorization").cloned().unwrap_or_default());
            let mut body = serde_json::json!({ "you_sent": echoed }).to_string().replace('/', "\\/").into_bytes();
            let mut status = StatusCode::OK;
            if let Some((from, to)) = headers
                .get(header::RANGE)
                .and_then(|r| r.to_str().ok()?.strip_prefix("bytes=")?.split_once('-'))
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
            {
                if from >= body.len() {
                    return StatusCode::RANGE_NOT_SATISFIABLE.into_response();
                }
                body = body[from..=to.min(body.len() - 1)].to_vec();
                status = StatusCode::PARTIAL_CONTENT;
            }
            let gzip =
                headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("gzip"));
            if gzip {
                use std::io::Write;
                let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(&body).unwrap();
                let zipped = enc.finish().unwrap();
                return (status, [(header::CONTENT_ENCODING, "gzip")], zipped).into_response();
            }
            (status, body).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind((SAAS_IP, 0)).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, app).into_future());
    (url, seen)
}

/// Every form the token could be smuggled in: as is, reversed, hex (either case), JSON with
/// `\/`, base64 of each.
fn smuggled_forms(secret: &str) -> Vec<String> {
    use base64::Engine as _;
    let reversed: String = secret.chars().rev().collect();
    let mut forms = vec![secret.to_string(), reversed.clone(), secret.replace('/', "\\/")];
    for s in [secret, reversed.as_str()] {
        forms.push(hex::encode(s));
        forms.push(base64::engine::general_purpose::STANDARD.encode(s));
        forms.push(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s));
    }
    forms.into_iter().map(|f| f.to_ascii_lowercase()).collect()
}

/// Issue 12 §1: against an allowed host that echoes request headers, a plugin tries to read
/// back the credential the host injects — gzip-compressed (through `offramp:plugin/http` and
/// through `wasi:http`), JSON-escaped (`\/`), and in 8-byte `Range` slices — then writes
/// what it got reversed and hex into its log, stdout and error, and POSTs it raw to another
/// allowed host. Nothing of the credential, in any of those forms, reaches the results table
/// or the collector.
#[tokio::test]
async fn the_credential_cannot_be_read_back_by_compression_escaping_or_slicing() {
    let dir = tempfile::tempdir().unwrap();
    let (api, saw) = echo_api().await;
    let (collector, loot) = collector().await;
    let creds =
        format!("    credentials:\n      - {{ host: \"{api}\", secret: ECHO_TOKEN, format: \"Bearer {{secret}}\" }}\n");
    let mut yaml = String::from("version: 1\nname: thief\nsteps:\n");
    for attack in ["steal_gzip", "steal_gzip_wasi", "steal_range", "steal_credential"] {
        let with = format!("{{ attack: {attack}, url: \"{api}/echo\", collector: \"{collector}/loot\" }}");
        yaml += &step(attack, &with, &[api.clone(), collector.clone()], &creds);
    }
    let (plan, engine) = hostile(dir.path(), "thief", &yaml, ("ECHO_TOKEN", SLASHY)).await;
    let request = StartRequest { inputs: Default::default(), requested_by: "test".into(), dry_run: false };
    let run = engine.start(&plan, request).await.unwrap();
    assert_eq!(engine.drive(&run).await.unwrap(), RunStatus::Failed);
    let steps = engine.store().steps(&run).await.unwrap();
    let events = engine.store().events(&run).await.unwrap();

    // The API did get the credential each time (there was something to steal) ...
    let saw = saw.lock().unwrap().clone();
    assert!(saw.len() >= 4 && saw.iter().all(|a| *a == format!("Bearer {SLASHY}")), "{saw:?}");
    // ... and each attack ran to its end: captured something, and sent it on.
    for s in &steps {
        let error = s.error.clone().unwrap_or_default();
        assert!(error.contains("captured") && error.contains("exfiltration answered 200"), "{}: {error}", s.step_id);
    }
    let loot = loot.lock().unwrap().clone();
    assert_eq!(loot.len(), 4, "{loot:?}");
    // The host negotiated: the plugin's Accept-Encoding and Range never reached the API.
    let range = steps.iter().find(|s| s.step_id == "steal_range").unwrap();
    assert_eq!(range.requests.as_array().map(|r| r.iter().filter(|r| r["method"] == "GET").count()), Some(1));
    // Nothing, in any form, anywhere.
    let everything = format!("{steps:?} {events:?} {loot:?}").to_ascii_lowercase();
    for form in smuggled_forms(SLASHY) {
        assert!(!everything.contains(&form), "the credential leaked as `{form}`");
    }
    assert!(everything.contains("[redacted]"), "the echoes came back redacted");
}

/// The peak RSS (bytes) of a finished child, from the kernel's accounting.
fn wait_peak_rss(child: std::process::Child) -> (std::process::ExitStatus, u64) {
    use std::os::unix::process::ExitStatusExt;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for the kernel to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for (std's Child is dropped unwaited).
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(got, pid, "wait4: {}", std::io::Error::last_os_error());
    std::mem::forget(child);
    (std::process::ExitStatus::from_raw(status), u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024)
}

/// The `offramp` binary built next to this test.
fn offramp_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(|d| d.parent()).unwrap().join("offramp");
    assert!(bin.is_file(), "{} is missing: `cargo test --workspace` builds it", bin.display());
    bin
}

/// Issue 12 §2: a plugin that tries to make the host hold memory for it — wasi:http header
/// objects never dropped, outgoing bodies filled and never sent, huge method names, 1 MiB
/// URLs on refused calls, 100,000 calls — each fails with a step error naming the limit, the
/// run finishes (it never wedges `running`), every result row stays under a fixed size, and
/// the `offramp` process's peak RSS stays within the step's `memory:` plus a fixed amount of
/// the peak of the same process running one harmless step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bombs_are_bounded_and_the_run_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let (collector, _) = collector().await;
    let denied = "https://denied.example";
    let mut yaml = String::from("version: 1\nname: bombs\nsteps:\n");
    let bombs = [
        ("fields", "{ attack: fields_bomb, count: 80000, kib: 16 }".to_string(), vec![]),
        ("fields_big", "{ attack: fields_bomb, count: 80000, kib: 64 }".to_string(), vec![]),
        ("bodies", "{ attack: bodies_bomb, count: 10000 }".to_string(), vec![]),
        ("methods", "{ attack: method_bomb, count: 1000, kib: 1024 }".to_string(), vec![]),
        (
            "long_urls",
            format!("{{ attack: send_flood, count: 1100, kib: 1024, url: \"{collector}\" }}"),
            vec![collector.clone()],
        ),
        ("flood", format!("{{ attack: send_flood, count: 100000, url: \"{denied}\" }}"), vec![]),
    ];
    for (id, with, allow) in &bombs {
        yaml += &step(id, with, allow, "    memory: 64MiB\n    timeout: 120s\n");
    }
    std::fs::write(dir.path().join("bombs.yaml"), &yaml).unwrap();
    std::fs::write(
        dir.path().join("calm.yaml"),
        "version: 1\nname: calm\nsteps:\n  - { id: echo, uses: testkit, with: { mode: echo, value: 1 } }\n",
    )
    .unwrap();
    let run = |name: &str| {
        let db = format!("sqlite://{}", dir.path().join(format!("{name}.db")).display());
        let child = std::process::Command::new(offramp_bin())
            .args(["run", dir.path().join(format!("{name}.yaml")).to_str().unwrap(), "--json"])
            .args(["--database-url", &db, "--max-parallel", "1", "--allow-private", "127.0.0.2"])
            .env("OFFRAMP_PLUGINS_DIR", offramp::TEST_PLUGINS_DIR)
            .env("OFFRAMP_CACHE_DIR", PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("offramp-component-cache"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let (status, peak) = tokio::task::block_in_place(|| wait_peak_rss(child));
        (status, peak, db)
    };
    // Compiled components come from the shared cache, so neither run measures a compilation.
    for plugin in ["adversary", "testkit"] {
        let wasm = PathBuf::from(offramp::TEST_PLUGINS_DIR).join(format!("{plugin}.wasm"));
        let warm = std::process::Command::new(offramp_bin())
            .args(["plugin", "inspect", wasm.to_str().unwrap()])
            .env("OFFRAMP_CACHE_DIR", PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("offramp-component-cache"))
            .output()
            .unwrap();
        assert!(warm.status.success(), "{}", String::from_utf8_lossy(&warm.stderr));
    }
    let (calm_status, calm_peak, _) = run("calm");
    assert_eq!(calm_status.code(), Some(0));
    let (status, peak, db) = run("bombs");
    assert_eq!(status.code(), Some(1), "the run finished as failed (not a crash, not wedged)");
    let growth = peak.saturating_sub(calm_peak);
    let bound = (64 + 96) << 20;
    assert!(growth <= bound, "peak RSS grew by {} MiB over a harmless run's ({} MiB)", growth >> 20, calm_peak >> 20);
    eprintln!("peak RSS: harmless run {} MiB, bombs {} MiB (+{} MiB)", calm_peak >> 20, peak >> 20, growth >> 20);

    let store = SqliteStore::open(&db).await.unwrap();
    let runs = offramp::store::Store::runs(&store, 1).await.unwrap();
    let steps = offramp::store::Store::steps(&store, &runs[0].id).await.unwrap();
    let by_id: HashMap<&str, &StepRecord> = steps.iter().map(|s| (s.step_id.as_str(), s)).collect();
    for s in &steps {
        assert_eq!(s.status, StepStatus::Failed, "{}: {:?}", s.step_id, s.error);
        let row = serde_json::to_string(s).unwrap().len();
        assert!(row < 2 << 20, "{}: a {row}-byte row", s.step_id);
    }
    let error = |id: &str| by_id[id].error.clone().unwrap_or_default();
    assert!(error("fields").contains("`sandbox.max_host_resources`"), "{}", error("fields"));
    assert!(
        error("fields_big").contains("over the host's limit of 32 KiB per header object"),
        "{}",
        error("fields_big")
    );
    assert!(error("bodies").contains("`sandbox.max_host_resources`"), "{}", error("bodies"));
    assert!(error("methods").contains("method name refused at request 0"), "{}", error("methods"));
    let long_urls = by_id["long_urls"].requests.to_string();
    assert!(long_urls.contains("`network.limits.max_url_bytes`"), "{long_urls}");
    assert!(long_urls.len() < 200 << 10, "records keep a short URL: {} bytes", long_urls.len());
    assert!(error("flood").contains("100000"), "{}", error("flood"));
    let flood = by_id["flood"].requests.as_array().unwrap();
    assert!(flood[0]["outcome"].as_str().unwrap().contains("not in this step's `allow:` list"), "{:?}", flood[0]);
    assert!(flood.len() <= 121, "{} records", flood.len());
    assert_eq!(flood.last().unwrap()["omitted"], 100_000 - 120, "the rest counted");
}
