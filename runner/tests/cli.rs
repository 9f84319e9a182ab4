//! The `offramp` binary itself: run → pause (exit 3) → resume --retry / --skip / --abort,
//! `runs list/show`, `validate`, `plugin inspect`, checking the results table after each.
//! (These live in the runner crate so cargo builds the binary for them.)

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn offramp_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_offramp"))
}

struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    fn new() -> Cli {
        Cli { dir: tempfile::tempdir().unwrap() }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(offramp_bin())
            .args(args)
            .env("DATABASE_URL", format!("sqlite://{}", self.dir.path().join("cli.db").display()))
            .env("OFFRAMP_CACHE_DIR", PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("offramp-component-cache"))
            // The bundled plugins and the test ones (`testkit`).
            .env("OFFRAMP_PLUGINS_DIR", offramp::TEST_PLUGINS_DIR)
            // The mock SaaS is on loopback, which plugins reach only with the operator's word.
            .env("OFFRAMP_ALLOW_PRIVATE", "127.0.0.1")
            .current_dir(self.dir.path())
            .output()
            .expect("offramp runs")
    }

    fn json(&self, args: &[&str]) -> (i32, Value) {
        let out = self.run(args);
        let v = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}\n{}", text(&out.stdout), text(&out.stderr)));
        (out.status.code().unwrap_or(-1), v)
    }

    fn pipeline(&self) -> String {
        let p = self.dir.path().join("pause.yaml");
        std::fs::write(
            &p,
            r#"version: 1
name: pause-demo
inputs: { who: { type: string, required: true } }
steps:
  - id: first
    uses: testkit
    with: { mode: echo, value: "{{ inputs.who }}" }
  - id: flaky
    needs: [first]
    uses: testkit
    with: { mode: fail, times: 1, kind: permanent }
  - id: last
    needs: [flaky]
    uses: testkit
    with: { mode: noop }
"#,
        )
        .unwrap();
        p.display().to_string()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn statuses(v: &Value) -> Vec<(String, String, u64)> {
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step_id"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
                s["attempts"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn row(name: &str, status: &str, attempts: u64) -> (String, String, u64) {
    (name.to_string(), status.to_string(), attempts)
}

#[test]
fn pause_then_resume_with_retry_skip_and_abort() {
    let cli = Cli::new();
    let p = cli.pipeline();

    // retry
    let (code, v) = cli.json(&["run", &p, "-i", "who=alice", "--json"]);
    assert_eq!(code, 3, "paused runs exit 3: {v}");
    let id = v["run"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["run"]["status"], "paused");
    assert_eq!(statuses(&v), vec![row("first", "succeeded", 1), row("flaky", "paused", 1), row("last", "pending", 0)]);
    assert!(v["steps"][1]["error"].as_str().unwrap().contains("planned failure on attempt 1"));
    let (code, v) = cli.json(&["resume", &id, "--retry", "--as", "ann", "--json"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        statuses(&v),
        vec![row("first", "succeeded", 1), row("flaky", "succeeded", 2), row("last", "unchanged", 1)]
    );
    // A second decision on the same step is refused, saying who decided.
    let out = cli.run(&["resume", &id, "--retry"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("nothing to resume"), "{}", text(&out.stderr));

    // skip
    let (code, v) = cli.json(&["run", &p, "-i", "who=bob", "--json"]);
    assert_eq!(code, 3);
    let id = v["run"]["id"].as_str().unwrap().to_string();
    let (code, v) = cli.json(&["resume", &id, "--skip", "--as", "ann", "--json"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        statuses(&v),
        vec![row("first", "succeeded", 1), row("flaky", "skipped", 1), row("last", "unchanged", 1)]
    );
    assert!(v["steps"][1]["error"].as_str().unwrap().starts_with("skipped by ann"));

    // abort
    let (code, v) = cli.json(&["run", &p, "-i", "who=cat", "--json"]);
    assert_eq!(code, 3);
    let id = v["run"]["id"].as_str().unwrap().to_string();
    let (code, v) = cli.json(&["resume", &id, "--abort", "--as", "ann", "--json"]);
    assert_eq!(code, 1, "aborted runs exit 1: {v}");
    assert_eq!(v["run"]["status"], "aborted");
    assert_eq!(statuses(&v), vec![row("first", "succeeded", 1), row("flaky", "failed", 1), row("last", "skipped", 0)]);

    // The event log has who decided what.
    let (_, v) = cli.json(&["runs", "show", &id, "--json", "--events"]);
    let decision = v["events"].as_array().unwrap().iter().find(|e| e["kind"] == "decision").unwrap();
    assert_eq!((decision["actor"].as_str(), decision["detail"]["decision"].as_str()), (Some("ann"), Some("abort")));

    // runs list shows all three, newest first.
    let (_, v) = cli.json(&["runs", "list", "--json"]);
    let subjects: Vec<&str> = v.as_array().unwrap().iter().map(|r| r["subject"].as_str().unwrap()).collect();
    assert_eq!(subjects, vec!["cat", "bob", "alice"]);
    let out = cli.run(&["runs", "list"]);
    assert!(text(&out.stdout).contains("pause-demo"), "{}", text(&out.stdout));
}

#[test]
fn run_prints_progress_and_a_results_table_and_resume_hint() {
    let cli = Cli::new();
    let p = cli.pipeline();
    let out = cli.run(&["run", &p, "-i", "who=dan"]);
    assert_eq!(out.status.code(), Some(3));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("first") && stdout.contains("✔ succeeded"), "{stdout}");
    assert!(stdout.contains("⏸ paused"), "{stdout}");
    assert!(text(&out.stderr).contains("offramp resume"), "{}", text(&out.stderr));
}

#[test]
fn bad_inputs_and_bad_pipelines_exit_2() {
    let cli = Cli::new();
    let p = cli.pipeline();
    let out = cli.run(&["run", &p]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("missing required input `who`"), "{}", text(&out.stderr));
    let out = cli.run(&["run", &p, "-i", "who=x", "-i", "whom=y"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown input `whom`"));

    let bad = cli.dir.path().join("bad.yaml");
    std::fs::write(&bad, "version: 1\nname: bad\nsteps:\n  - id: a\n    uses: testkit\n    neds: [b]\n").unwrap();
    let out = cli.run(&["validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("bad.yaml:6:5: unknown field `neds` (did you mean `needs`?)"), "{err}");
    let out = cli.run(&["validate", &p]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // `run` type-checks against the plugins' contracts first: a typo in the last step's `with:`
    // refuses the whole run, before any step (or the database) is touched.
    let okta = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pipelines/okta.yaml"))
        .unwrap()
        .replace("      action: deactivate", "      action: deactivat");
    let cli = Cli::new();
    let typo = cli.dir.path().join("typo.yaml");
    std::fs::write(&typo, okta).unwrap();
    let out = cli.run(&["run", typo.to_str().unwrap(), "-i", "email=alice@example.com"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("typo.yaml:72:15: okta has no action `deactivat` (did you mean `deactivate`?)"), "{err}");
    assert!(!cli.dir.path().join("cli.db").exists(), "an invalid pipeline touched the database");
    // A file that is not UTF-8 is refused at its first bad byte, through the same reading `run` does.
    let latin1 = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pipelines/invalid/65-latin1.yaml");
    let out = cli.run(&["validate", latin1.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("65-latin1.yaml:2:10: the file is not UTF-8: byte 0xE9"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn validate_reports_steps_asking_for_more_than_the_operator_allows() {
    let cli = Cli::new();
    let config = cli.dir.path().join("offramp.yaml");
    std::fs::write(&config, "network:\n  allow: [\"https://*.okta.com\", \"https://slack.com\"]\n").unwrap();
    let p = cli.dir.path().join("p.yaml");
    let yaml = "version: 1\nname: p\nsteps:\n  - id: a\n    uses: testkit\n    allow: [\"https://acme.okta.com\", \"https://evil.example.net\"]\n";
    std::fs::write(&p, yaml).unwrap();
    let out = cli.run(&["validate", "--config", config.to_str().unwrap(), p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("p.yaml:6:38: https://evil.example.net:443 is outside what the operator allows pipelines to reach (`network.allow`: https://*.okta.com:443, https://slack.com:443); ask the operator to add it"),
        "{err}"
    );
    assert!(!err.contains("acme.okta.com:443 is outside"), "a subdomain of an allowed wildcard passes: {err}");
    // Without the cap the same pipeline is valid; a broken config file is an error, not no cap.
    assert_eq!(cli.run(&["validate", p.to_str().unwrap()]).status.code(), Some(0));
    std::fs::write(&config, "network:\n  allow: [okta.com]\n").unwrap();
    let out = cli.run(&["validate", "--config", config.to_str().unwrap(), p.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("network.allow: malformed host `okta.com`"), "{}", text(&out.stderr));
}

#[test]
fn plugin_inspect_prints_describe() {
    let cli = Cli::new();
    let okta = PathBuf::from(offramp::BUILTIN_PLUGINS_DIR).join("okta.wasm");
    let out = cli.run(&["plugin", "inspect", okta.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.starts_with("okta 0.1.0"), "{s}");
    assert!(s.contains("action") && s.contains("required"), "{s}");
    // What each import gets here, the limits, and what each step of a pipeline may do with it.
    let pipeline = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pipelines/okta.yaml");
    let out = cli.run(&[
        "plugin",
        "inspect",
        okta.to_str().unwrap(),
        "--pipeline",
        pipeline.to_str().unwrap(),
        "--var",
        "okta_url=https://acme.okta.com",
    ]);
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{s}{}", text(&out.stderr));
    assert!(s.contains("offramp:plugin/http@0.1.1       HTTP through the gate"), "{s}");
    assert!(s.contains("wasi:cli/environment@0.2.6      nothing: no variables"), "{s}");
    assert!(s.contains("100 requests per attempt"), "{s}");
    assert!(s.contains("  suspend: allowed https://acme.okta.com:443"), "{s}");
    assert!(s.contains("  suspend: secret OKTA_API_TOKEN → authorization header of https://acme.okta.com:443"), "{s}");
    let out = cli.run(&["plugin", "inspect", "/nonexistent.wasm"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read plugin"));
}

#[test]
fn plugin_run_tries_a_plugin_against_a_mock_with_an_injected_credential() {
    let cli = Cli::new();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let mock = rt.block_on(offramp_mock::MockServer::start("cli-okta-token")).unwrap();
    let okta = PathBuf::from(offramp::BUILTIN_PLUGINS_DIR).join("okta.wasm");
    let input = format!(r#"{{"action":"lookup","org_url":"{}","user":"alice@example.com"}}"#, mock.url());
    let secrets = cli.dir.path().join("secrets.env");
    std::fs::write(&secrets, "OKTA_API_TOKEN=cli-okta-token\n").unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["plugin", "run", okta.to_str().unwrap(), "--input", &input];
        args.extend_from_slice(extra);
        cli.run(&args)
    };
    let url = mock.url();
    let cred = format!("{url}=OKTA_API_TOKEN");
    let secrets_arg = secrets.to_str().unwrap();
    let out =
        run(&["--allow", &url, "--credential", &cred, "--format", "SSWS {secret}", "--secrets-file", secrets_arg]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("\"status\": \"ACTIVE\""), "{stdout}");
    assert!(stdout.contains("→ 200 (with OKTA_API_TOKEN)"), "{stdout}");
    assert!(!stdout.contains("cli-okta-token"), "the secret is not printed");
    let seen = mock.state.requests();
    assert!(seen.iter().all(|r| r.authorization.as_deref() == Some("SSWS cli-okta-token")), "{seen:?}");
    // Without --allow the gate refuses, as it would for a step: exit 1 with the reason.
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("is not in this step's `allow:` list"), "{}", text(&out.stdout));
    // A credential for a host that is not allowed is a usage error, before anything runs.
    let out = run(&["--credential", &cred, "--secrets-file", secrets_arg]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("allow it too"), "{}", text(&out.stderr));
}

#[test]
fn dry_run_prints_the_requests_it_held_back() {
    let cli = Cli::new();
    let p = cli.dir.path().join("dry.yaml");
    std::fs::write(
        &p,
        r#"version: 1
name: dry
steps:
  - id: hook
    uses: http
    with: { method: POST, url: "https://hooks.example.com/offboarded", json: { user: x } }
    allow: [https://hooks.example.com]
"#,
    )
    .unwrap();
    let out = cli.run(&["run", p.to_str().unwrap(), "--dry-run"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("recorded and not sent"), "{stdout}");
    assert!(stdout.contains("hook                 POST   https://hooks.example.com/offboarded"), "{stdout}");
    // runs show: what the step was allowed, and what it used.
    let (_, v) = cli.json(&["runs", "list", "--json"]);
    let id = v[0]["id"].as_str().unwrap().to_string();
    let shown = text(&cli.run(&["runs", "show", &id]).stdout);
    assert!(shown.contains("    allowed  https://hooks.example.com:443\n"), "{shown}");
    assert!(shown.contains("    used     POST https://hooks.example.com/offboarded → not sent (dry run)"), "{shown}");
}

#[test]
fn the_demo_runs_the_slack_conversation_to_the_end() {
    let cli = Cli::new();
    let out = cli.run(&["demo"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    // The conversation: confirmation, Start, the paused step with its buttons, Retry, summary.
    assert!(stdout.contains("Offboard alice@example.com with `offboarding`?"), "{stdout}");
    assert!(stdout.contains("[ Start ] [ Cancel ]"), "{stdout}");
    assert!(stdout.contains("[ Retry ] [ Skip ] [ Abort run ]"), "{stdout}");
    assert!(stdout.contains("Okta E0000006 (403)"), "the paused step's error shows: {stdout}");
    assert!(stdout.contains("retried by @U0ADMIN"), "{stdout}");
    assert!(stdout.contains("succeeded: alice@example.com"), "{stdout}");
    assert!(stdout.contains("status succeeded"), "{stdout}");
    // The full offboarding pipeline ran across every mocked service, each getting only its own
    // credential, and Alice ends up deprovisioned everywhere.
    for step in ["okta_user", "google_transfer", "m365_groups", "slack_deactivate", "github_remove", "zoom_deactivate"]
    {
        assert!(stdout.contains(step), "the results table shows {step}: {stdout}");
    }
    for vendor in ["Okta", "Google Workspace", "Microsoft Graph", "Slack", "GitHub", "Zoom", "Atlassian"] {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(vendor) && l.contains("requests ("))
            .unwrap_or_else(|| panic!("no line for {vendor}: {stdout}"));
        let (n, rest) = line.trim_start()[vendor.len()..].trim_start().split_once(" requests").unwrap();
        let n: usize = n.trim().parse().unwrap();
        assert!(n > 0, "{vendor} saw no request: {line}");
        assert!(rest.contains(&format!("{n}/{n} with its own credential")), "{line}");
    }
    assert!(stdout.contains("Okta              DEPROVISIONED"), "{stdout}");
    assert!(stdout.contains("suspended: true") && stdout.contains("transfer to dana: completed"), "{stdout}");
    assert!(stdout.contains("accountEnabled: false"), "{stdout}");
    assert!(stdout.contains("Slack             active: false"), "{stdout}");
    assert!(stdout.contains("member of acme: no"), "{stdout}");
    assert!(stdout.contains("Zoom              inactive"), "{stdout}");
    assert!(stdout.contains("Atlassian         inactive"), "{stdout}");
    assert!(!stdout.contains("not-a-real-secret") && !stdout.contains("demo-signing-secret"), "no secret is printed");
    // Five vendors' credentials were minted by offramp from keys and client secrets (Okta with
    // DPoP), checked before the conversation, and no token reached what people see.
    for (name, kind) in [
        ("OKTA_API_TOKEN", "Okta private_key_jwt + DPoP"),
        ("GOOGLE_ACCESS_TOKEN", "Google service account"),
        ("GRAPH_ACCESS_TOKEN", "Microsoft client credentials"),
        ("GITHUB_TOKEN", "GitHub App"),
        ("ZOOM_ACCESS_TOKEN", "Zoom Server-to-Server OAuth"),
    ] {
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!("ok    {name} ")))
            .unwrap_or_else(|| panic!("{name}: {stdout}"));
        assert!(line.contains(kind) && line.contains("token minted") && line.ends_with("→ 200"), "{line}");
    }
    assert!(
        stdout.contains("(okta 1, google 1, microsoft 1, github 1, zoom 1); found in Slack messages, the results table or the event log: 0"),
        "{stdout}"
    );
}

#[test]
fn serve_refuses_to_start_without_its_secrets() {
    let cli = Cli::new();
    let mut cmd = Command::new(offramp_bin());
    cmd.args(["serve", "--channel", "C0TEST", "--listen", "127.0.0.1:0"])
        .env("DATABASE_URL", format!("sqlite://{}", cli.dir.path().join("cli.db").display()))
        .env_remove("SLACK_SIGNING_SECRET")
        .env_remove("SLACK_BOT_TOKEN")
        .env_remove("OFFRAMP_SECRETS_FILE")
        .current_dir(cli.dir.path());
    let out = cmd.output().expect("offramp runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("SLACK_SIGNING_SECRET is not set"), "{}", text(&out.stderr));

    // An empty bot token is as good as none.
    let out = cmd.env("SLACK_SIGNING_SECRET", "s3cret-signing").env("SLACK_BOT_TOKEN", "  ").output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("SLACK_BOT_TOKEN is not set"), "{stderr}");
    assert!(!stderr.contains("s3cret-signing"), "a secret is never printed: {stderr}");
}

#[test]
fn approvers_are_added_listed_and_removed() {
    let cli = Cli::new();
    let out = cli.run(&["approvers", "add", "U024BE7LH", "<@W0ADMIN>", "--as", "ops"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("added U024BE7LH") && text(&out.stdout).contains("added W0ADMIN"));
    let out = cli.run(&["approvers", "add", "U024BE7LH"]);
    assert!(text(&out.stdout).contains("already an approver"), "{}", text(&out.stdout));
    let (code, list) = cli.json(&["approvers", "list", "--json"]);
    assert_eq!(code, 0);
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|a| a["user_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{list}");
    assert!(ids.contains(&"U024BE7LH") && ids.contains(&"W0ADMIN"));
    assert_eq!(list[0]["added_by"], "ops");

    let out = cli.run(&["approvers", "add", "alice"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("Copy member ID"), "{}", text(&out.stderr));

    let out = cli.run(&["approvers", "remove", "U024BE7LH"]);
    assert_eq!(out.status.code(), Some(0));
    let out = cli.run(&["approvers", "remove", "U024BE7LH"]);
    assert_eq!(out.status.code(), Some(1), "removing someone who is not there says so");
    let (_, list) = cli.json(&["approvers", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
}

/// `GET path` over a plain TCP connection; returns the status line and body.
fn http_get(addr: &str, path: &str) -> Option<(String, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).ok()?;
    let status = out.lines().next()?.to_string();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    Some((status, body))
}

#[test]
fn serve_starts_from_a_config_file_and_answers_health_checks() {
    let cli = Cli::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let config = cli.dir.path().join("offramp.yaml");
    let pipelines = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    std::fs::write(
        &config,
        format!(
            "listen: {addr}\nchannel: C0TEST\npipelines_dir: {}\nvars: {{ okta_url: https://acme.okta.com }}\n",
            pipelines.display()
        ),
    )
    .unwrap();
    // A run a killed process left behind: `serve` picks it up at start.
    let db = format!("sqlite://{}", cli.dir.path().join("serve.db").display());
    let crashed = crashed_run(&cli, &db);
    let mut child = Command::new(offramp_bin())
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("DATABASE_URL", &db)
        .env("OFFRAMP_ALLOW_PRIVATE", "127.0.0.1")
        .env("SLACK_SIGNING_SECRET", "test-signing-secret")
        .env("SLACK_BOT_TOKEN", "xoxb-test")
        .env("OFFRAMP_API_TOKEN", "api-token")
        .env_remove("OFFRAMP_SECRETS_FILE")
        .current_dir(cli.dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("offramp serve starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let health = loop {
        if let Some(r) = http_get(&addr, "/healthz") {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "offramp serve did not answer on {addr}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let runs = http_get(&addr, "/api/runs");
    let finished = loop {
        let out = Command::new(offramp_bin())
            .args(["runs", "show", &crashed, "--json"])
            .env("DATABASE_URL", &db)
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if v["run"]["status"] == "succeeded" || std::time::Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(health.0.contains("200"), "{health:?}");
    assert!(health.1.contains(r#"{"status":"ok"}"#), "{health:?}");
    assert!(runs.is_some_and(|r| r.0.contains("401")), "the API needs the bearer token");
    assert!(text(&out.stderr).contains("reporting to C0TEST"), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("picking up 1 run(s)"), "{}", text(&out.stderr));
    assert_eq!(finished["run"]["status"], "succeeded", "the interrupted run was finished: {finished}");
    assert_eq!(finished["steps"][1]["attempts"], 2);

    // A typo in the file is an error, not a silently ignored key.
    std::fs::write(&config, "chanel: C0TEST\n").unwrap();
    let out = Command::new(offramp_bin())
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("SLACK_SIGNING_SECRET", "x")
        .env("SLACK_BOT_TOKEN", "y")
        .current_dir(cli.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("unknown field `chanel`"), "{}", text(&out.stderr));
}

/// Leaves in `db` a run of the pause-demo pipeline as a killed process would: `first` done,
/// `flaky` claimed (running attempt 1), the run `running`. Returns its id.
fn crashed_run(cli: &Cli, db: &str) -> String {
    use offramp::store::{Event, Guard, RunStatus, StepChange, StepStatus, Store};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store: std::sync::Arc<dyn Store> = offramp::store::open(db).await.unwrap();
        let opts = offramp::pipeline::LoadOptions {
            plugins_dir: PathBuf::from(offramp::TEST_PLUGINS_DIR),
            vars: Default::default(),
            allow_cap: None,
            contracts: Default::default(),
        };
        let plan = offramp::pipeline::load(std::path::Path::new(&cli.pipeline()), &opts).unwrap();
        let sandbox = std::sync::Arc::new(offramp::sandbox::Sandbox::new(None).unwrap());
        let engine = offramp::engine::Engine::new(
            store.clone(),
            sandbox,
            offramp::secrets::SecretSource::fixed([]),
            // A process that dies: its lease runs out at once.
            offramp::engine::EngineConfig {
                lease: std::time::Duration::from_millis(1),
                network: offramp::http::NetworkPolicy::with_private_hosts(["127.0.0.1"]).unwrap(),
                ..Default::default()
            },
        )
        .unwrap();
        let req = offramp::engine::StartRequest {
            inputs: [("who".to_string(), "dan".to_string())].into_iter().collect(),
            requested_by: "test".into(),
            dry_run: false,
        };
        let id = engine.start(&plan, req).await.unwrap();
        let ev = |k: &str| Event::new("engine", k, serde_json::json!({}));
        store.set_run_status(&id, &[RunStatus::Pending], RunStatus::Running, None, ev("run_started")).await.unwrap();
        let done = StepChange {
            status: Some(StepStatus::Succeeded),
            attempts: Some(1),
            output: Some(serde_json::json!({ "value": "dan" })),
            finished: true,
            ..Default::default()
        };
        store.change_step(&id, "first", &[], None, None, done, ev("step_finished")).await.unwrap();
        let claim =
            StepChange { status: Some(StepStatus::Running), attempts: Some(1), started: true, ..Default::default() };
        store.change_step(&id, "flaky", &[], Some(Guard::Attempt(0)), None, claim, ev("step_started")).await.unwrap();
        id
    })
}

#[test]
fn recover_continues_runs_a_killed_process_left_in_flight() {
    let cli = Cli::new();
    let db = format!("sqlite://{}", cli.dir.path().join("cli.db").display());
    let id = crashed_run(&cli, &db);
    let (code, out) = cli.json(&["recover", "--json"]);
    // `flaky` fails on attempt 1 only; picked up as attempt 2, it succeeds, and so does the run.
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["run"]["id"], id.as_str());
    assert_eq!(out["run"]["status"], "succeeded");
    let steps = out["steps"].as_array().unwrap();
    assert_eq!(steps[0]["attempts"], 1, "the finished step did not run again");
    assert_eq!(steps[1]["attempts"], 2, "the interrupted step ran as attempt 2");
    assert_eq!(steps[1]["output"]["idempotency_key"], offramp::engine::idempotency_key(&id, "flaky").as_str());
    let out = cli.run(&["recover"]);
    assert!(text(&out.stdout).contains("no run was left in flight"), "{}", text(&out.stdout));
}

/// Runs `program` in `dir`; panics with its output when it fails.
fn build_in(dir: &std::path::Path, program: &str, args: &[&str], env: &[(&str, String)]) {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // The outer `cargo test` must not steer the guest build.
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO_") && key != "CARGO_HOME" || key.starts_with("RUSTC") || key == "RUSTFLAGS" {
            cmd.env_remove(key);
        }
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(out.status.success(), "{program} {args:?} failed:\n{}\n{}", text(&out.stdout), text(&out.stderr));
}

#[test]
fn plugin_new_scaffolds_build_and_run_as_generated_in_rust_python_and_js() {
    let cli = Cli::new();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let mock = rt.block_on(offramp_mock::MockServer::start("scaffold-token")).unwrap();
    let tools = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools");
    let shared_target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("scaffold-target");
    let path = format!("{}:{}", tools.join("node/node_modules/.bin").display(), std::env::var("PATH").unwrap());
    let py = std::env::var("COMPONENTIZE_PY").unwrap_or_else(|_| "componentize-py".into());
    // A server that answers every path with an HTML page, not JSON.
    let html = rt.block_on(async {
        let app = axum::Router::new().fallback(|| async { "<html>not json</html>" });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(axum::serve(listener, app).into_future());
        url
    });

    for (lang, name) in [("rust", "hello_rs"), ("python", "hello_py"), ("js", "hello_js")] {
        let out = cli.run(&["plugin", "new", "--lang", lang, name]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains("build it:"), "{}", text(&out.stdout));
        let dir = cli.dir.path().join(name);
        // The build command the README gives, as written (the JS one minus `npm install`, whose
        // package the test tools already hold).
        let wasm = match lang {
            "rust" => {
                let env = [("CARGO_TARGET_DIR", shared_target.display().to_string())];
                build_in(&dir, "cargo", &["build", "--release", "--target", "wasm32-wasip2", "--quiet"], &env);
                shared_target.join(format!("wasm32-wasip2/release/{name}.wasm"))
            }
            "python" => {
                build_in(
                    &dir,
                    &py,
                    &["-d", "wit", "-w", "described-task", "componentize", "app", "-o", &format!("{name}.wasm")],
                    &[],
                );
                dir.join(format!("{name}.wasm"))
            }
            _ => {
                build_in(&dir, "npm", &["run", "--silent", "build"], &[("PATH", path.clone())]);
                dir.join(format!("{name}.wasm"))
            }
        };
        assert!(wasm.is_file(), "{lang}: no {}", wasm.display());
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
        assert!(readme.contains("plugin run"), "{readme}");

        // Runs as generated: a lookup through the gate, against the mock's echo endpoint.
        let input = format!(r#"{{"api_url": "{}/__echo", "user": "alice"}}"#, mock.url());
        let cred = format!("{}=EXAMPLE_API_TOKEN", mock.url());
        let secrets = cli.dir.path().join("example.env");
        std::fs::write(&secrets, "EXAMPLE_API_TOKEN=example-secret-value\n").unwrap();
        let args = ["plugin", "run", wasm.to_str().unwrap(), "--input", &input, "--allow", &mock.url()];
        let out = cli.run(&[&args[..], &["--credential", &cred, "--secrets-file", secrets.to_str().unwrap()]].concat());
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{lang}: {stdout}{}", text(&out.stderr));
        assert!(stdout.contains("\"path\": \"/__echo/users/alice\""), "{lang}: {stdout}");
        // The host injected the credential, and the echo of it came back redacted.
        assert!(stdout.contains("[REDACTED]") && !stdout.contains("example-secret-value"), "{lang}: {stdout}");
        // Its describe() answers, as `plugin inspect` shows.
        let out = cli.run(&["plugin", "inspect", wasm.to_str().unwrap()]);
        assert!(text(&out.stdout).starts_with(&format!("{name} 0.1.0")), "{lang}: {}", text(&out.stdout));
        // Its contract() declares what `with:` takes: `validate` catches a misspelt key before any run.
        assert!(text(&out.stdout).contains("with:   api_url*: string, user*: string"), "{lang}: {}", text(&out.stdout));
        let pipeline = dir.join("p.yaml");
        let yaml = format!(
            "version: 1\nname: p\nsteps:\n  - id: a\n    uses: {}\n    with: {{ api_url: https://x.example, usr: alice }}\n",
            wasm.display()
        );
        std::fs::write(&pipeline, yaml).unwrap();
        let out = cli.run(&["validate", pipeline.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{lang}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("unknown key `usr`"), "{lang}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("is missing `user`"), "{lang}: {}", text(&out.stderr));
        // A user that tries to climb out of /users/ stays inside it (refused or encoded).
        let input = format!(r#"{{"api_url": "{}/__echo", "user": "../admin"}}"#, mock.url());
        let out = cli.run(&["plugin", "run", wasm.to_str().unwrap(), "--input", &input, "--allow", &mock.url()]);
        assert!(!text(&out.stdout).contains("\"path\": \"/__echo/admin\""), "{lang}: {}", text(&out.stdout));
        // A 404 is `unchanged` with found: false.
        let input = format!(r#"{{"api_url": "{}/nowhere", "user": "alice"}}"#, mock.url());
        let out = cli.run(&["plugin", "run", wasm.to_str().unwrap(), "--input", &input, "--allow", &mock.url()]);
        assert_eq!(out.status.code(), Some(0), "{lang}: {}", text(&out.stdout));
        assert!(text(&out.stdout).contains("\"found\": false"), "{lang}: {}", text(&out.stdout));
        // An answer that is not JSON: the step fails with what went wrong, in the plugin's own
        // words (a JavaScript exception's message and stack, a Python traceback's last lines).
        let input = format!(r#"{{"api_url": "{html}", "user": "alice"}}"#);
        let out = cli.run(&["plugin", "run", wasm.to_str().unwrap(), "--input", &input, "--allow", &html, "--json"]);
        assert_eq!(out.status.code(), Some(1), "{lang}: {}", text(&out.stdout));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let message = v["error"]["message"].as_str().unwrap_or_default().to_string();
        assert_eq!(v["status"], "failed", "{lang}: {v}");
        let expected = match lang {
            "js" => "SyntaxError",
            "python" => "JSONDecodeError",
            _ => "output is not JSON",
        };
        assert!(message.contains(expected), "{lang}: {message}");
        assert!(
            !message.contains("mozalloc_abort") && !message.contains("is not one of the cases"),
            "{lang}: {message}"
        );
    }
    // A bad name is refused with a suggestion, and nothing is written.
    let out = cli.run(&["plugin", "new", "--lang", "rust", "Hello-World"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("e.g. `hello_world`"), "{}", text(&out.stderr));
    assert!(!cli.dir.path().join("Hello-World").exists());
}

#[test]
fn offramp_mock_serves_the_vendors_for_trying_plugins_by_hand() {
    use std::io::{BufRead, BufReader};
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    /// Kills the server however the test ends.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(
        Command::new(offramp_bin())
            .args(["mock", "--listen", &format!("127.0.0.1:{port}"), "--token-seed", "by-hand"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains(&format!("127.0.0.1:{port}")), "{first}");
    let printed: Vec<String> = lines.by_ref().take(8).map(|l| l.unwrap()).collect();
    assert!(printed.iter().any(|l| l.trim() == "OKTA_API_TOKEN=by-hand"), "{printed:?}");
    // The same plugin run a newcomer does with the guide, against it.
    let cli = Cli::new();
    let okta = PathBuf::from(offramp::BUILTIN_PLUGINS_DIR).join("okta.wasm");
    let url = format!("http://127.0.0.1:{port}");
    let input = format!(r#"{{"action":"lookup","org_url":"{url}","user":"alice@example.com"}}"#);
    let secrets = cli.dir.path().join("s.env");
    std::fs::write(&secrets, "OKTA_API_TOKEN=by-hand\n").unwrap();
    let cred = format!("{url}=OKTA_API_TOKEN");
    let out = cli.run(&[
        "plugin",
        "run",
        okta.to_str().unwrap(),
        "--input",
        &input,
        "--allow",
        &url,
        "--credential",
        &cred,
        "--format",
        "SSWS {secret}",
        "--secrets-file",
        secrets.to_str().unwrap(),
    ]);
    drop(child);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("\"status\": \"ACTIVE\""), "{}", text(&out.stdout));
}

/// The operator's config file names where credentials come from; `credentials check` mints each
/// and reads once with it (exit 0), and says which one fails and why (exit 1). `plugin run`
/// mints a configured credential as a step would, with the key file given as `NAME_FILE`.
#[test]
fn credentials_check_and_plugin_run_mint_from_the_config_file() {
    use offramp_mock::oauth::{GitHubApp, OAuthConfig, OktaServiceApp, RsaKeyPair, ZoomApp};
    let cli = Cli::new();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (okta_key, github_key) = (RsaKeyPair::generate().unwrap(), RsaKeyPair::generate().unwrap());
    let oauth = OAuthConfig {
        okta: Some(OktaServiceApp {
            client_id: "0oaCli".into(),
            public_pem: okta_key.public_pem.clone(),
            scopes: vec!["okta.users.read".into()],
            require_dpop: true,
        }),
        github: Some(GitHubApp { app_id: 42, installation_id: 4242, public_pem: github_key.public_pem.clone() }),
        zoom: Some(ZoomApp {
            account_id: "acct".into(),
            client_id: "zc".into(),
            client_secret: "zoom-secret-1".into(),
        }),
        ..OAuthConfig::default()
    };
    let state = offramp_mock::MockState::okta("static-unused").with_oauth(oauth);
    let mock = rt.block_on(offramp_mock::MockServer::start_with(state)).unwrap();
    let url = mock.url();
    let config = cli.dir.path().join("offramp.yaml");
    std::fs::write(
        &config,
        format!(
            r#"credentials:
  OKTA_API_TOKEN:
    kind: okta
    org_url: {url}
    client_id: 0oaCli
    private_key: OKTA_KEY
    scopes: [okta.users.read]
    check: {url}/api/v1/users/alice@example.com
  GITHUB_TOKEN: {{ kind: github_app, app_id: 42, installation_id: 4242, private_key: GH_KEY, api_url: "{url}", check: "{url}/orgs/acme" }}
  ZOOM_ACCESS_TOKEN: {{ kind: zoom, account_id: acct, client_id: zc, client_secret: ZOOM_SECRET, token_url: "{url}/oauth/token", check: "{url}/v2/users/alice@example.com" }}
"#
        ),
    )
    .unwrap();
    let key_file = cli.dir.path().join("okta-key.json");
    std::fs::write(&key_file, okta_key.okta_jwk("kid-cli")).unwrap();
    let gh_file = cli.dir.path().join("app.pem");
    std::fs::write(&gh_file, &github_key.private_pem).unwrap();
    let secrets = cli.dir.path().join("secrets.env");
    let write_secrets = |zoom: &str| {
        std::fs::write(
            &secrets,
            format!("OKTA_KEY_FILE={}\nGH_KEY_FILE={}\nZOOM_SECRET={zoom}\n", key_file.display(), gh_file.display()),
        )
        .unwrap()
    };
    write_secrets("zoom-secret-1");
    let (cfg, sec) = (config.to_str().unwrap(), secrets.to_str().unwrap());
    let out = cli.run(&["--config", cfg, "--secrets-file", sec, "credentials", "check"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    for name in
        ["OKTA_API_TOKEN (Okta private_key_jwt + DPoP)", "GITHUB_TOKEN (GitHub App 42", "ZOOM_ACCESS_TOKEN (Zoom"]
    {
        assert!(stdout.lines().any(|l| l.starts_with(&format!("ok    {name}"))), "{name}: {stdout}");
    }
    // The same Okta credential, minted for `plugin run` (DPoP proofs included).
    let okta = PathBuf::from(offramp::BUILTIN_PLUGINS_DIR).join("okta.wasm");
    let input = format!(r#"{{"action":"lookup","org_url":"{url}","user":"alice@example.com"}}"#);
    let cred = format!("{url}=OKTA_API_TOKEN");
    let out = cli.run(&[
        "--config",
        cfg,
        "--secrets-file",
        sec,
        "plugin",
        "run",
        okta.to_str().unwrap(),
        "--input",
        &input,
        "--allow",
        &url,
        "--credential",
        &cred,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("\"status\": \"ACTIVE\""), "{}", text(&out.stdout));
    assert!(mock.state.requests().iter().any(|r| r.path.starts_with("/api/v1/users/")
        && r.authorization.as_deref().is_some_and(|a| a.starts_with("DPoP "))
        && r.status == 200));
    // A rotated Zoom secret: that one fails with Zoom's own words, exit 1.
    write_secrets("an-old-zoom-secret");
    let out = cli.run(&["--config", cfg, "--secrets-file", sec, "credentials", "check", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let zoom = v.as_array().unwrap().iter().find(|r| r["name"] == "ZOOM_ACCESS_TOKEN").unwrap();
    let err = zoom["outcome"]["Err"].as_str().unwrap_or_default();
    assert!(err.contains("invalid_client") && err.contains("Invalid client_id or client_secret"), "{zoom}");
    assert!(!text(&out.stdout).contains("an-old-zoom-secret"), "the secret is not printed");
    // A mistake in the section: every one reported, with its field, before anything runs.
    std::fs::write(
        &config,
        "credentials:\n  okta: { kind: okta, org_url: x, client_id: c, private_key: \"-----BEGIN\", scopes: [] }\n",
    )
    .unwrap();
    let out = cli.run(&["--config", cfg, "credentials", "check"]);
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    for want in [
        "credentials.okta: a credential's name",
        "credentials.okta.private_key:",
        "credentials.okta.scopes:",
        "credentials.okta.org_url: `x` is not a URL",
    ] {
        assert!(stderr.contains(want), "{want}: {stderr}");
    }
}

/// `run --inputs-file`: every row checked first (a bad row starts nothing, each error on its
/// line), then one batch of runs driven a few at a time, a table of outcomes, and
/// `runs list --batch`.
#[test]
fn run_with_an_inputs_file_runs_a_batch() {
    let cli = Cli::new();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let mock = rt.block_on(offramp_mock::MockServer::start("batch-okta-token")).unwrap();
    let secrets = cli.dir.path().join("secrets.env");
    std::fs::write(&secrets, "OKTA_API_TOKEN=batch-okta-token\n").unwrap();
    let pipeline = concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines/okta.yaml");
    let var = format!("okta_url={}", mock.url());
    let run = |file: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["--secrets-file", secrets.to_str().unwrap(), "run", pipeline, "--var", &var];
        args.extend_from_slice(&["--inputs-file", file.to_str().unwrap()]);
        args.extend_from_slice(extra);
        cli.run(&args)
    };
    // Bad rows: all reported with their lines, nothing started.
    let bad = cli.dir.path().join("bad.csv");
    std::fs::write(&bad, "email,shoe_size\nalice@example.com,\nnot-an-email,\nbob@example.com,44\n").unwrap();
    let out = run(&bad, &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.csv:3:") && stderr.contains("not-an-email"), "{stderr}");
    assert!(stderr.contains("bad.csv:4:") && stderr.contains("shoe_size"), "{stderr}");
    assert!(stderr.contains("nothing was started"), "{stderr}");
    let (_, v) = cli.json(&["runs", "list", "--json"]);
    assert_eq!(v.as_array().unwrap().len(), 0, "no run was created");
    // Three leavers: active, already suspended, already deprovisioned.
    let good = cli.dir.path().join("leavers.csv");
    std::fs::write(&good, "email\nalice@example.com\nbob@example.com\ncarol@example.com\n").unwrap();
    let out = run(&good, &["--concurrency", "2"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("3 runs of okta, 2 at a time"), "{stdout}");
    assert!(stdout.contains("3 succeeded"), "{stdout}");
    let batch = stdout.lines().find_map(|l| l.strip_prefix("batch ")).unwrap().split(':').next().unwrap().to_string();
    let (code, v) = cli.json(&["runs", "list", "--batch", &batch, "--json"]);
    assert_eq!(code, 0);
    let subjects: Vec<&str> = v.as_array().unwrap().iter().map(|r| r["subject"].as_str().unwrap()).collect();
    assert_eq!(subjects.len(), 3);
    for who in ["alice@example.com", "bob@example.com", "carol@example.com"] {
        assert!(subjects.contains(&who), "{subjects:?}");
    }
    assert!(v.as_array().unwrap().iter().all(|r| r["batch_id"] == batch.as_str() && r["status"] == "succeeded"));
    assert_eq!(mock.state.okta.user("alice@example.com").unwrap().status, "DEPROVISIONED");
    // JSON lines work too, with an --input default for every row.
    let jsonl = cli.dir.path().join("more.jsonl");
    std::fs::write(&jsonl, "{\"email\": \"bob@example.com\"}\n\n{\"email\": \"carol@example.com\"}\n").unwrap();
    let out = run(&jsonl, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["batch"]["size"], 2);
    assert_eq!(v["runs"].as_array().unwrap().iter().map(|r| r["line"].as_u64().unwrap()).collect::<Vec<_>>().len(), 2);
}

/// `offramp … | head`: a reader that goes away is not a crash. The command finishes its work
/// and exits as it would have, with nothing about a broken pipe.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let cli = Cli::new();
    let mut child = Command::new(offramp_bin())
        .args(["schema"])
        .current_dir(cli.dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
}
