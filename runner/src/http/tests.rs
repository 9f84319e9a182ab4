//! The gate's checks, request by request.

use super::*;

fn gate(allow: &[&str], dry_run: bool) -> Gate {
    gate_with(allow, dry_run, NetworkPolicy::default())
}

fn gate_with(allow: &[&str], dry_run: bool, policy: NetworkPolicy) -> Gate {
    Gate::new(
        &GateClient::new(policy).unwrap(),
        allow.iter().map(|a| Grant::origin(crate::pipeline::Origin::parse(a).unwrap())).collect(),
        vec![],
        dry_run,
        Instant::now() + Duration::from_secs(5),
    )
}

#[tokio::test]
async fn non_public_addresses_are_denied_however_they_are_spelled() {
    // Nothing listens there: a denial must come from the check, not from the connection.
    let allow = ["http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9", "http://10.0.0.1:9"];
    let g = gate(&allow, false);
    for url in [
        "http://127.0.0.1:9/",
        "http://2130706433:9/",
        "http://0x7f000001:9/",
        "http://0177.0.0.1:9/",
        "http://127.1:9/",
        "http://[::1]:9/",
        "http://[::ffff:127.0.0.1]:9/",
        "http://localhost:9/",
        "http://10.0.0.1:9/",
    ] {
        let allowed = g.allow.iter().any(|o| o.origin.matches(&url::Url::parse(url).unwrap()));
        let err = g.send(get(url)).await.unwrap_err();
        let HttpFailure::Denied(why) = &err else { panic!("{url}: {err:?}") };
        if allowed {
            assert!(why.contains("; offramp only connects to public addresses"), "{url}: {why}");
        }
    }
    let why = g.send(get("http://localhost:9/")).await.unwrap_err().to_string();
    assert!(why.contains("localhost resolves to 127.0.0.1, a loopback address"), "{why}");
}

#[tokio::test]
async fn the_operator_can_allow_a_private_host() {
    let policy = NetworkConfig { allow_private: vec!["127.0.0.1".into()], ..Default::default() }.policy().unwrap();
    let g = gate_with(&["http://127.0.0.1:9", "http://localhost:9"], false, policy);
    // Allowed through the check, so the failure is the closed port.
    assert!(matches!(g.send(get("http://127.0.0.1:9/")).await, Err(HttpFailure::Transport(_))));
    // The permission is for that host: another name for the same address is still denied.
    assert!(matches!(g.send(get("http://localhost:9/")).await, Err(HttpFailure::Denied(_))));
}

#[tokio::test]
async fn grants_narrow_methods_and_paths() {
    let client = GateClient::new(NetworkPolicy::default()).unwrap();
    let grant = Grant {
        origin: crate::pipeline::Origin::parse("https://api.github.com").unwrap(),
        methods: vec!["DELETE".into()],
        paths: vec!["/orgs/acme/members/".into()],
    };
    let g = Gate::new(&client, vec![grant], vec![], true, Instant::now() + Duration::from_secs(5));
    let req = |method: &str, url: &str| OutgoingRequest { method: method.into(), ..get(url) };
    let err = g.send(req("GET", "https://api.github.com/orgs/acme/members/alice")).await.unwrap_err();
    assert_eq!(
        err,
        HttpFailure::Denied("GET /orgs/acme/members/alice is outside what this step's `allow:` grants for https://api.github.com:443: https://api.github.com:443 DELETE /orgs/acme/members/".into())
    );
    let err = g.send(req("DELETE", "https://api.github.com/orgs/acme/members/../../admins/x")).await.unwrap_err();
    assert!(matches!(err, HttpFailure::Denied(ref m) if m.contains("DELETE /orgs/admins/x is outside")), "{err:?}");
    // Within the grant, the dry run is what holds it back.
    let ok = g.send(req("DELETE", "https://api.github.com/orgs/acme/members/alice")).await;
    assert_eq!(ok.unwrap_err(), HttpFailure::DryRun);
}

#[tokio::test]
async fn the_operators_cap_and_body_limit_hold_at_send_time() {
    let policy = NetworkConfig {
        allow: Some(vec!["https://*.okta.com".into()]),
        limits: policy::LimitsConfig { max_request_bytes: Some("10".into()), ..Default::default() },
        ..Default::default()
    }
    .policy()
    .unwrap();
    let g = gate_with(&["https://example.com", "https://acme.okta.com"], true, policy);
    let err = g.send(get("https://example.com/")).await.unwrap_err();
    assert_eq!(err, HttpFailure::Denied("https://example.com:443 is outside the operator's `network.allow`".into()));
    let big = OutgoingRequest { method: "POST".into(), body: Some(vec![0; 11]), ..get("https://acme.okta.com/") };
    assert_eq!(g.send(big).await.unwrap_err(), HttpFailure::RequestTooLarge(10));
}

fn get(url: &str) -> OutgoingRequest {
    OutgoingRequest { method: "GET".into(), url: url.into(), headers: vec![], body: None, body_charged: false }
}

#[tokio::test]
async fn hosts_outside_the_allow_list_are_denied_and_recorded() {
    let g = gate(&["https://example.okta.com"], false);
    let err = g.send(get("https://evil.example.net/x?token=1")).await.unwrap_err();
    assert_eq!(err, HttpFailure::Denied("https://evil.example.net:443 is not in this step's `allow:` list".into()));
    // Same host, other port: denied too.
    assert!(matches!(g.send(get("https://example.okta.com:8443/")).await, Err(HttpFailure::Denied(_))));
    assert!(matches!(g.send(get("file:///etc/passwd")).await, Err(HttpFailure::Denied(_))));
    let j = g.journal();
    assert_eq!(j.len(), 3);
    assert_eq!(j[0].url, "https://evil.example.net/x", "query strings are not recorded");
}

#[tokio::test]
async fn dry_run_holds_back_mutations() {
    let g = gate(&["https://example.okta.com"], true);
    let req =
        OutgoingRequest { method: "post".into(), ..get("https://example.okta.com/api/v1/users/x/lifecycle/suspend") };
    assert_eq!(g.send(req).await.unwrap_err(), HttpFailure::DryRun);
    assert!(g.journal()[0].dry_run);
}
