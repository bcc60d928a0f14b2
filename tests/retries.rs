//! Retries from the admin API: on the recorded or the current version of a
//! workflow, one run or every finished run matching a filter.

use crate::harness::{eventually, TestApp};
use crate::upstream::Upstream;
use serde_json::{json, Value as Json};
use std::time::Duration;

/// A sync workflow whose request node calls `path` on the upstream.
fn calling(upstream: &Upstream, path: &str, enabled: bool) -> String {
    format!(
        "title: Forward\nenabled: {enabled}\ntrigger: {{ type: webhook, mode: sync, key: retry-forward-1 }}\n\
         nodes:\n  - key: erp\n    type: request\n    url: \"{}{path}\"\n    body: {{ order: \"{{{{ trigger.body.order }}}}\" }}\n  \
         - type: response\n    body: {{ forwarded: \"{{{{ trigger.body.order }}}}\" }}\n",
        upstream.base
    )
}

fn new_id(r: &crate::harness::Resp) -> String {
    assert_eq!(r.status, 201, "{r:?}");
    r.json()["execution_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no execution_id: {}", r.body))
        .to_string()
}

#[test]
fn retry_on_the_current_version_runs_the_fixed_workflow() {
    let upstream = Upstream::start();
    let app = TestApp::spawn(&[("fwd.yaml", &calling(&upstream, "/status/500", true))]);
    let failed = app.post_json("retry-forward-1", &json!({"order": "A-1"}));
    assert_eq!(failed.status, 500, "{failed:?}");
    let failed_id = failed.execution();
    let old = app.finished(&failed_id, Duration::from_secs(10));
    assert_eq!(old["status"], json!("failed"));

    // The operator fixes the file; the server reloads it.
    app.write_workflow("fwd.yaml", &calling(&upstream, "/fixed", true));
    eventually(Duration::from_secs(10), "the fixed version", || {
        let listing = app.admin_get("/api/workflows").json();
        (listing["workflows"][0]["version"] != old["version"]).then_some(())
    });

    // Recorded (the default, and said explicitly): the old version fails again.
    for body in [None, Some(json!({})), Some(json!({"version": "recorded"}))] {
        let path = format!("/api/executions/{failed_id}/retry");
        let r = match &body {
            None => app.admin_post(&path),
            Some(b) => app.admin_post_json(&path, b),
        };
        let again = app.finished(&new_id(&r), Duration::from_secs(10));
        assert_eq!(again["status"], json!("failed"), "{body:?}: {again}");
        assert_eq!(again["retry_of"], json!(failed_id));
        assert_eq!(again["version"], old["version"]);
    }
    // Current: the fixed version resolves, with the recorded input.
    let r = app.admin_post_json(
        &format!("/api/executions/{failed_id}/retry"),
        &json!({"version": "current"}),
    );
    let fixed = app.finished(&new_id(&r), Duration::from_secs(10));
    assert_eq!(fixed["status"], json!("resolved"), "{fixed}");
    assert_eq!(fixed["retry_of"], json!(failed_id));
    assert_ne!(fixed["version"], old["version"]);
    assert_eq!(fixed["response"]["body"], json!({"forwarded": "A-1"}));
    let fixed_hits = upstream.hits_on("/fixed");
    assert_eq!(fixed_hits.len(), 1);
    assert!(fixed_hits[0].body.contains("A-1"), "{:?}", fixed_hits[0]);

    // A bad version is 400; a disabled workflow has no current version (409).
    let path = format!("/api/executions/{failed_id}/retry");
    for bad in [
        json!({"version": "latest"}),
        json!({"version": 1}),
        json!([1]),
        json!({"versoin": "current"}),
    ] {
        let r = app.admin_post_json(&path, &bad);
        assert_eq!(r.status, 400, "{bad}: {r:?}");
    }
    app.write_workflow("fwd.yaml", &calling(&upstream, "/fixed", false));
    let r = eventually(Duration::from_secs(10), "the disabled version", || {
        let r = app.admin_post_json(&path, &json!({"version": "current"}));
        (r.status == 409).then_some(r)
    });
    assert!(r.body.contains("disabled"), "{r:?}");
    let unknown: Json = app
        .admin_post_json(
            "/api/executions/00000000-0000-0000-0000-000000000000/retry",
            &json!({"version": "current"}),
        )
        .json();
    assert_eq!(unknown["error"], json!("not_found"), "{unknown}");
}
