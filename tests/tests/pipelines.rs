//! The example pipelines, run end to end against the mock SaaS: `offboarding.yaml` across every
//! vendor (Okta, Google Workspace, Microsoft Graph, Slack, GitHub, Zoom in Python, Atlassian in
//! JavaScript) and `contractor.yaml`.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{Harness, tokens};
use offramp::store::{RunStatus, StepRecord, StepStatus};
use offramp_mock::{LoggedRequest, MockServer, Vendor};

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../pipelines/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Which vendor serves `path`, by the vendor var that points at it.
fn vendor_var(path: &str) -> Option<&'static str> {
    Some(if path.starts_with("/api/v1/") {
        "okta_url"
    } else if path.starts_with("/admin/directory/") || path.starts_with("/admin/datatransfer/") {
        "google_url"
    } else if path.starts_with("/v1.0/") {
        "graph_url"
    } else if path.starts_with("/scim/") {
        "slack_scim_url"
    } else if path.starts_with("/api/") {
        "slack_url"
    } else if path.starts_with("/orgs/") {
        "github_url"
    } else if path.starts_with("/v2/") {
        "zoom_url"
    } else if path.starts_with("/users/") || path.starts_with("/admin/v1/") {
        "atlassian_url"
    } else {
        return None;
    })
}

fn assert_credentials_went_only_to_their_vendor(seen: &[LoggedRequest]) {
    for r in seen {
        let vendor = Vendor::of_path(&r.path).unwrap_or_else(|| panic!("a request to an unknown vendor path: {r:?}"));
        assert_eq!(r.authorization, Some(vendor.authorization(&tokens())), "{} {}", r.method, r.path);
    }
}

fn assert_all_done(s: &HashMap<String, StepRecord>) {
    for (id, rec) in s {
        assert!(
            matches!(rec.status, StepStatus::Succeeded | StepStatus::Unchanged),
            "{id}: {:?} {:?} {:?}",
            rec.status,
            rec.error,
            rec.log
        );
    }
}

#[tokio::test]
async fn offboarding_runs_across_every_mocked_service_in_a_safe_order() {
    let h = Harness::new().await;
    // Each lookup is slow: if the four ran one after the other their windows could not overlap.
    for path in ["/api/v1/users/", "/admin/directory/v1/users/", "/v1.0/users/", "/scim/v2/Users"] {
        h.mock.state.inject(offramp_mock::Fault {
            method: Some("GET".into()),
            path_contains: path.into(),
            status: 0,
            times: 1,
            delay_ms: 300,
        });
    }
    // Each vendor on a server of its own (all sharing the mock's state), as they would be.
    let mut servers = Vec::new();
    let mut vars = BTreeMap::new();
    for var in [
        "okta_url",
        "google_url",
        "graph_url",
        "slack_url",
        "slack_scim_url",
        "github_url",
        "zoom_url",
        "atlassian_url",
    ] {
        let server = MockServer::start_with(h.mock.state.clone()).await.unwrap();
        vars.insert(var.to_string(), server.url());
        servers.push(server);
    }
    let yaml = read("offboarding.yaml");
    let plan = h.plan_with(&yaml, vars.clone());
    let inputs = [("email", "alice@example.com"), ("manager", "dana@example.com"), ("github_login", "alice-gh")];
    let (id, status) = h.run_plan(&plan, &inputs).await;
    let s = h.steps(&id).await;
    assert_eq!(status, RunStatus::Succeeded, "{s:#?}");
    assert_eq!(s.len(), 24);
    assert_all_done(&s);

    // Every service did its part.
    let st = &h.mock.state;
    assert_eq!(st.okta.user("alice@example.com").unwrap().status, "DEPROVISIONED");
    let alice = st.okta.user("alice@example.com").unwrap();
    assert!(alice.grants.is_empty() && alice.refresh_tokens.is_empty() && alice.sessions == 0);
    assert_eq!(s["google_transfer"].status, StepStatus::Succeeded);
    assert_eq!(s["m365_disable"].status, StepStatus::Succeeded);
    assert_eq!(s["slack_deactivate"].status, StepStatus::Succeeded);
    assert_eq!(s["github_remove"].status, StepStatus::Succeeded);
    assert_eq!(s["zoom_deactivate"].status, StepStatus::Succeeded, "Python plugin: {:?}", s["zoom_deactivate"].log);
    assert_eq!(s["atlassian_disable"].status, StepStatus::Succeeded, "JS plugin: {:?}", s["atlassian_disable"].log);

    // The slow lookups ran at the same time (4 at once: the engine's default parallelism).
    let window = |id: &str| (s[id].started_at.clone().unwrap(), s[id].finished_at.clone().unwrap());
    let lookups = ["okta_user", "google_user", "m365_user", "slack_user"].map(window);
    for a in &lookups {
        for b in &lookups {
            assert!(a.0 < b.1 && b.0 < a.1, "lookups overlap: {a:?} {b:?}");
        }
    }

    // Drive and Calendar were handed over before anything deprovisioned.
    let seen = st.requests();
    let transferred = seen
        .iter()
        .rposition(|r| r.path.starts_with("/admin/datatransfer/v1/transfers") && r.method == "GET")
        .expect("the transfer was polled");
    let deprovisioning = |r: &LoggedRequest| {
        (r.method == "DELETE"
            && (r.path.contains("/members") || r.path.contains("/apps/") || r.path.contains("/groups/")))
            || r.path.ends_with("/lifecycle/deactivate")
            || r.path.contains("/manage/lifecycle/disable")
            || (r.method == "DELETE" && (r.path.starts_with("/scim/") || r.path.starts_with("/orgs/")))
            || r.path.ends_with("/status")
    };
    let first = seen.iter().position(deprovisioning).expect("something was deprovisioned");
    assert!(transferred < first, "transfer done at #{transferred}, first deprovisioning at #{first}: {seen:#?}");
    // And the IdP went last.
    let deactivated = seen.iter().position(|r| r.path.ends_with("/lifecycle/deactivate")).unwrap();
    assert!(seen[deactivated + 1..].iter().all(|r| r.method == "GET"), "{:#?}", &seen[deactivated..]);
    assert_credentials_went_only_to_their_vendor(&seen);
    // And every request went to its own vendor's server: no credential crossed hosts.
    for r in &seen {
        let var = vendor_var(&r.path).unwrap();
        let expected = vars[var].trim_start_matches("http://");
        assert_eq!(r.host.as_deref(), Some(expected), "{} {} reached the wrong server", r.method, r.path);
    }

    // Run it again: nothing left to do, and no second transfer.
    let before = seen.iter().filter(|r| r.method == "POST" && r.path == "/admin/datatransfer/v1/transfers").count();
    let (id, status) = h.run_plan(&plan, &inputs).await;
    let s = h.steps(&id).await;
    assert_eq!(status, RunStatus::Succeeded, "{s:#?}");
    // Ending sessions can't be checked first (Google and Graph don't say whether any were
    // open), so those two steps sign out again; everything else sees the work already done.
    let mut changed: Vec<&str> =
        s.iter().filter(|(_, r)| r.status != StepStatus::Unchanged).map(|(k, _)| k.as_str()).collect();
    changed.sort();
    assert_eq!(changed, ["google_sign_out", "m365_sessions"], "a second run changes nothing else");
    let after =
        st.requests().iter().filter(|r| r.method == "POST" && r.path == "/admin/datatransfer/v1/transfers").count();
    assert_eq!(before, after);
}

#[tokio::test]
async fn contractor_ends_access_without_touching_google_or_microsoft() {
    let h = Harness::new().await;
    let yaml = read("contractor.yaml");
    let (id, status) = h.run(&yaml, &[("email", "alice@example.com"), ("github_login", "alice-gh")]).await;
    let s = h.steps(&id).await;
    assert_eq!(status, RunStatus::Succeeded, "{s:#?}");
    assert_eq!(s.len(), 9);
    assert_all_done(&s);
    assert_eq!(h.mock.state.okta.user("alice@example.com").unwrap().status, "DEPROVISIONED");
    let seen = h.mock.state.requests();
    assert!(seen.iter().all(|r| !r.path.starts_with("/admin/directory") && !r.path.starts_with("/v1.0")), "{seen:#?}");
    assert_credentials_went_only_to_their_vendor(&seen);
    // Without a GitHub login the GitHub step has nothing to do, and says so.
    let (id, status) = h.run(&yaml, &[("email", "bob@example.com")]).await;
    let s = h.steps(&id).await;
    assert_eq!(status, RunStatus::Succeeded, "{s:#?}");
    assert_eq!(s["github_remove"].status, StepStatus::Unchanged, "{:?}", s["github_remove"].output);
}
