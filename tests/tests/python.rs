//! A plugin written in Python (componentize-py), through the same interface and host policy.

mod common;

use common::Harness;
use offramp::store::{RunStatus, StepStatus};

#[tokio::test]
async fn the_python_notify_plugin_posts_through_the_host() {
    let h = Harness::new().await;
    // plugins/python/notify, built by runner/build.rs with componentize-py (scripts/tools.sh installs it).
    let plugin = "notify";
    let yaml = format!(
        r#"version: 1
name: py
vars: {{ okta_url: http://placeholder }}
inputs: {{ email: {{ type: email, required: true }} }}
steps:
  - id: tell
    uses: {plugin}
    with: {{ url: "{{{{ vars.okta_url }}}}/__echo/hook", text: "{{{{ inputs.email }}}} was offboarded" }}
    allow: ["{{{{ vars.okta_url }}}}"]
  - id: denied
    uses: {plugin}
    with: {{ url: "https://hooks.example.net/x", text: nope }}
    allow: ["{{{{ vars.okta_url }}}}"]
    on_failure: continue
"#
    );
    let (id, status) = h.run(&yaml, &[("email", "alice@example.com")]).await;
    let s = h.steps(&id).await;
    assert_eq!(s["tell"].status, StepStatus::Succeeded, "{:?} {:?}", s["tell"].error, s["tell"].log);
    assert_eq!(s["tell"].output.as_ref().unwrap()["status"], 200);
    assert!(s["tell"].log.iter().any(|l| l.contains("webhook answered 200")), "{:?}", s["tell"].log);
    let seen = h.mock.state.requests();
    assert_eq!(seen.len(), 1, "only the allowed request went out: {seen:?}");
    assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("POST", "/__echo/hook"));
    // The same host policy applies to Python: the other host was refused.
    assert_eq!(s["denied"].status, StepStatus::Failed);
    assert!(
        s["denied"].error.as_deref().unwrap().contains("not in this step's `allow:` list"),
        "{:?}",
        s["denied"].error
    );
    assert_eq!(status, RunStatus::Failed);
}
