//! Retries from the admin API: on the recorded or the current version of a
//! workflow, one run or every finished run matching a filter.

use crate::harness::{eventually, Options, TestApp};
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
    let mut retry_ids = Vec::new();
    for body in [None, Some(json!({})), Some(json!({"version": "recorded"}))] {
        let path = format!("/api/executions/{failed_id}/retry");
        let r = match &body {
            None => app.admin_post(&path),
            Some(b) => app.admin_post_json(&path, b),
        };
        retry_ids.push(new_id(&r));
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
    // The failed run's record names its four retries, oldest first.
    retry_ids.push(new_id(&r));
    let failed = app
        .admin_get(&format!("/api/executions/{failed_id}"))
        .json();
    assert_eq!(failed["retries"], json!(retry_ids), "{failed}");
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
    std::fs::remove_file(app.workflows.path().join("fwd.yaml")).expect("remove");
    let r = eventually(Duration::from_secs(10), "the workflow to go", || {
        let r = app.admin_post_json(&path, &json!({"version": "current"}));
        (r.status == 409 && r.body.contains("not loaded")).then_some(r)
    });
    assert!(r.body.contains("fwd"), "{r:?}");
    let unknown: Json = app
        .admin_post_json(
            "/api/executions/00000000-0000-0000-0000-000000000000/retry",
            &json!({"version": "current"}),
        )
        .json();
    assert_eq!(unknown["error"], json!("not_found"), "{unknown}");
}

const CHECKED: &str = "title: Checked\nenabled: true\ntrigger: { type: webhook, mode: sync, key: KEY }\nnodes:\n  - key: check\n    type: condition\n    if: \"trigger.body.ok\"\n    reject_on_false: true\n  - type: response\n    body: { ok: true }\n";

#[test]
fn bulk_retry_starts_one_run_per_failed_run_matching() {
    let app = TestApp::spawn(&[
        ("bulk.yaml", &CHECKED.replace("KEY", "bulk-retry-key-1")),
        ("other.yaml", &CHECKED.replace("KEY", "bulk-retry-key-2")),
    ]);
    let before = app.admin_get("/api/executions?limit=1").json();
    assert_eq!(before["executions"], json!([]));
    // Before the runs: a time they all start after.
    let since = "2020-01-01T00:00:00Z";
    let mut failed = Vec::new();
    for ok in [true, false, true, false, true, true, false] {
        let r = app.post_json("bulk-retry-key-1", &json!({"ok": ok}));
        assert_eq!(r.status, if ok { 200 } else { 500 }, "{r:?}");
        let id = r.execution();
        app.finished(&id, Duration::from_secs(10));
        if !ok {
            failed.push(id);
        }
    }
    // A failed run of another workflow is not retried.
    let other = app
        .post_json("bulk-retry-key-2", &json!({"ok": false}))
        .execution();
    app.finished(&other, Duration::from_secs(10));

    let r = app.admin_post_json(
        "/api/executions/retry",
        &json!({"workflow": "bulk", "status": "failed", "since": since}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let answer = r.json();
    let ids: Vec<String> = answer["execution_ids"]
        .as_array()
        .expect("execution_ids")
        .iter()
        .map(|v| v.as_str().expect("an id").to_string())
        .collect();
    assert_eq!(ids.len(), 3, "{answer}");
    assert!(answer.get("not_retried").is_none(), "{answer}");
    let mut retried: Vec<String> = ids
        .iter()
        .map(|id| {
            let record = app.finished(id, Duration::from_secs(10));
            assert_eq!(record["workflow"], json!("bulk"));
            assert_eq!(record["status"], json!("failed"), "{record}");
            record["retry_of"].as_str().expect("retry_of").to_string()
        })
        .collect();
    // Oldest first: the new runs keep the order of the runs they retry.
    assert_eq!(retried, failed);
    retried.sort();
    retried.dedup();
    assert_eq!(retried.len(), 3);
    // Exactly three new runs: 7 + 3 of this workflow.
    let all = app
        .admin_get("/api/executions?workflow=bulk&limit=100")
        .json();
    assert_eq!(
        all["executions"].as_array().map(Vec::len),
        Some(10),
        "{all}"
    );

    // The same retry again runs each of the three once more, from its
    // latest try: a run retried before is not retried again.
    let r = app.admin_post_json(
        "/api/executions/retry",
        &json!({"workflow": "bulk", "status": "failed", "since": since}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let again = r.json();
    assert_eq!(again["already_retried"], json!(3), "{again}");
    let mut retried_again: Vec<String> = again["execution_ids"]
        .as_array()
        .expect("execution_ids")
        .iter()
        .map(|v| {
            let record = app.finished(v.as_str().expect("an id"), Duration::from_secs(10));
            record["retry_of"].as_str().expect("retry_of").to_string()
        })
        .collect();
    retried_again.sort();
    let mut latest = ids.clone();
    latest.sort();
    assert_eq!(retried_again, latest, "{again}");

    // Nothing matches before `until`; bad fields are 400.
    let r = app.admin_post_json(
        "/api/executions/retry",
        &json!({"workflow": "bulk", "until": since}),
    );
    assert_eq!(
        (r.status, r.json()["execution_ids"].clone()),
        (201, json!([]))
    );
    for bad in [
        json!({"status": "running"}),
        json!({"status": "broken"}),
        json!({"since": "yesterday"}),
        json!({"workflow": 3}),
        json!({"version": "newest"}),
        json!({"stauts": "failed"}),
    ] {
        let r = app.admin_post_json("/api/executions/retry", &bad);
        assert_eq!(r.status, 400, "{bad}: {r:?}");
    }
}

/// A sync retry that goes on after its workflow's timeout (its answer, to
/// no one, was the timeout's) is still a retry while it runs: listed in the
/// retried run's `retries`, its own record pointing back.
#[test]
fn a_sync_retry_past_its_timeout_is_a_retry_while_it_runs() {
    let upstream = Upstream::start();
    let slow = format!(
        "title: Slow\nenabled: true\noptions: {{ timeout: 1s }}\ntrigger:\n  type: webhook\n  mode: sync\n  key: retry-slow-0001\n  timeout_response: {{ status: 202, body: later }}\nnodes:\n  - key: wait\n    type: request\n    method: GET\n    url: \"{}/sleep/2500\"\n  - type: response\n    body: done\n",
        upstream.base
    );
    let app = TestApp::spawn(&[("slow.yaml", &slow)]);
    let first = app.post("retry-slow-0001", &[], "");
    assert_eq!(first.status, 202, "{first:?}");
    let first_id = first.execution();
    app.finished(&first_id, Duration::from_secs(10));
    let retry = new_id(&app.admin_post(&format!("/api/executions/{first_id}/retry")));
    // Past the retry's own timeout, before its end.
    std::thread::sleep(Duration::from_millis(1500));
    let going = app.execution(&retry);
    assert_eq!(going["status"], json!("running"), "{going}");
    assert_eq!(going["retry_of"], json!(first_id), "{going}");
    let parent = app.execution(&first_id);
    assert_eq!(parent["retries"], json!([retry]), "{parent}");
    let done = app.finished(&retry, Duration::from_secs(10));
    assert_eq!(done["retry_of"], json!(first_id), "{done}");
}

/// A bulk retry that cannot start every run it matched says so without
/// hiding the runs it started: nothing starts when a run's request no
/// longer parses (409), and a queue that fills half-way gives 201 with the
/// runs started and how many were not (a 503 would lose their ids, and the
/// sender's retry would run them twice).
#[test]
fn a_bulk_retry_starts_all_or_names_what_it_started() {
    let upstream = Upstream::start();
    let parsed = "title: Parsed\nenabled: true\ntrigger:\n  type: webhook\n  mode: sync\n  key: bulk-parse-0001\n  parse:\n    body: [ { key: b } ]\nnodes:\n  - type: end\n    status: failed\n";
    let queued = "title: Queued\nenabled: true\ntrigger: { type: webhook, key: bulk-queue-0001 }\nnodes:\n  - type: end\n    status: failed\n";
    let app = TestApp::spawn_with(
        &[("parsed.yaml", parsed), ("queued.yaml", queued)],
        Options {
            args: ["--workers", "1", "--queue-capacity", "1"]
                .map(String::from)
                .to_vec(),
            ..Options::default()
        },
    );
    let count = |workflow: &str| {
        app.admin_get(&format!("/api/executions?workflow={workflow}&limit=100"))
            .json()["executions"]
            .as_array()
            .map_or(0, Vec::len)
    };
    let version = |workflow: &str| app.workflow_version(workflow);

    // The second run's request lacks `b`; then `b` becomes required.
    for body in [json!({"b": "ORDER-1"}), json!({"c": "no-b"})] {
        let id = app.post_json("bulk-parse-0001", &body).execution();
        app.finished(&id, Duration::from_secs(10));
    }
    let v1 = version("parsed");
    app.write_workflow(
        "parsed.yaml",
        &parsed.replace("key: b }", "key: b, required: true }"),
    );
    eventually(Duration::from_secs(10), "the new version", || {
        (version("parsed") != v1).then_some(())
    });
    let r = app.admin_post_json(
        "/api/executions/retry",
        &json!({"workflow": "parsed", "version": "current"}),
    );
    assert_eq!(r.status, 409, "{r:?}");
    assert!(r.body.contains("no longer parses"), "{r:?}");
    assert_eq!(count("parsed"), 2, "a run was started: {r:?}");

    // Three failed async runs; then each retry waits on a slow call, with
    // one worker and room for one run in the queue.
    for _ in 0..3 {
        let id = app.post_json("bulk-queue-0001", &json!({})).execution();
        app.finished(&id, Duration::from_secs(10));
    }
    let v1 = version("queued");
    app.write_workflow(
        "queued.yaml",
        &queued.replace(
            "  - type: end\n    status: failed\n",
            &format!(
                "  - type: request\n    method: GET\n    url: \"{}/sleep/3000\"\n",
                upstream.base
            ),
        ),
    );
    eventually(Duration::from_secs(10), "the slow version", || {
        (version("queued") != v1).then_some(())
    });
    let r = app.admin_post_json(
        "/api/executions/retry",
        &json!({"workflow": "queued", "version": "current"}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let answer = r.json();
    let started = answer["execution_ids"].as_array().map_or(0, Vec::len);
    let left = answer["not_started"].as_u64().unwrap_or(0);
    assert!((1..3).contains(&started), "{answer}");
    assert_eq!(started as u64 + left, 3, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("queue")),
        "{answer}"
    );
    assert_eq!(count("queued"), 3 + started, "{answer}");
}

/// Retried sync runs execute as many at once as async runs (`--workers`):
/// a bulk retry of many sync runs does not call their downstream all at
/// once (after an outage, that would knock it over again).
#[test]
fn a_bulk_retry_of_sync_runs_calls_the_downstream_a_few_at_a_time() {
    let upstream = Upstream::start();
    let slow = format!(
        "title: Slow\nenabled: true\ntrigger: {{ type: webhook, mode: sync, key: bulk-sync-slow-1 }}\nnodes:\n  - key: call\n    type: request\n    method: GET\n    url: \"{}/sleep/400\"\n  - type: response\n    body: done\n",
        upstream.base
    );
    let app = TestApp::spawn_with(
        &[("slow.yaml", &slow)],
        Options {
            args: ["--workers", "2"].map(String::from).to_vec(),
            ..Options::default()
        },
    );
    for _ in 0..6 {
        let r = app.post("bulk-sync-slow-1", &[], "");
        assert_eq!(r.status, 200, "{r:?}");
    }
    let before = upstream.hits_on("/sleep/400").len();
    assert_eq!(before, 6);
    let r = app.admin_post_json("/api/executions/retry", &json!({"workflow": "slow"}));
    assert_eq!(r.status, 201, "{r:?}");
    let ids: Vec<String> = r.json()["execution_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_str().expect("an id").to_string())
        .collect();
    assert_eq!(ids.len(), 6);
    for id in &ids {
        let record = app.finished(id, Duration::from_secs(15));
        assert_eq!(record["status"], json!("resolved"), "{record}");
    }
    let mut at: Vec<std::time::Instant> = upstream.hits_on("/sleep/400")[before..]
        .iter()
        .map(|h| h.at)
        .collect();
    at.sort();
    assert_eq!(at.len(), 6);
    // Two at a time, each call 400 ms: any three calls span a wave at least.
    for w in at.windows(3) {
        assert!(
            w[2] - w[0] >= Duration::from_millis(250),
            "three calls within {:?}",
            w[2] - w[0]
        );
    }
}
