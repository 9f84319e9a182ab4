//! The adversarial suite: the hostile plugin (plugins/adversary) tries every way out of the
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
use offramp::mock::{MockServer, MockState};
use offramp::pipeline::LoadOptions;
use offramp::secrets::SecretSource;
use offramp::store::{RunStatus, SqliteStore, StepRecord, StepStatus};

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
    ] {
        yaml += &step(id, with, &[], extra);
    }
    yaml += &step("sockets", &format!("{{ attack: sockets, addr: \"127.0.0.1:{port}\" }}"), &[], "");
    let path = dir.path().join("hostile.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let opts = LoadOptions { plugins_dir: PathBuf::from(offramp::BUILTIN_PLUGINS_DIR), ..Default::default() };
    let plan = offramp::pipeline::load(&path, &opts).unwrap_or_else(|e| panic!("{e}\n{yaml}"));

    let db = format!("sqlite://{}", dir.path().join("offramp.db").display());
    let store = Arc::new(SqliteStore::open(&db).await.unwrap());
    let secrets = SecretSource::fixed([("OKTA_API_TOKEN".to_string(), TOKEN.to_string())]);
    let config =
        EngineConfig { network: NetworkPolicy::with_private_hosts(["127.0.0.2"]).unwrap(), ..Default::default() };
    let engine = Engine::new(store, common::sandbox(), secrets, config).unwrap();
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
    expect("steal", &["SSWS [REDACTED]", "exfiltration answered 200"]);
    expect("spin", &["timed out after 1s"]);
    expect("memory_bomb", &["ran out of memory", "16 MiB"]);
    expect("recursion", &["ran out of stack"]);
    expect("env", &["blocked: 0 environment variables, 0 arguments"]);
    expect("files", &["blocked: /etc/passwd:"]);
    expect("clock", &["blocked: wall clock resolution 1s0ns, monotonic resolution 1000000ns"]);
    expect("huge_output", &["over the limit of 1048576 (`sandbox.max_output_bytes`)"]);
    expect("flood", &["flooded"]);
    expect("panic", &["the plugin crashed", "the adversary panics on purpose"]);
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
