use super::*;
use hookflow_model::load::{load_source, LoadOptions};
use hookflow_model::SecretPolicy;
use std::path::Path;

const FAMILIES: [(&str, &str); 13] = [
    ("hookflow_webhook_requests_total", "counter"),
    ("hookflow_webhook_request_duration_seconds", "histogram"),
    ("hookflow_refused_requests_total", "counter"),
    ("hookflow_runs_total", "counter"),
    ("hookflow_run_duration_seconds", "histogram"),
    ("hookflow_runs", "gauge"),
    ("hookflow_request_node_tries_total", "counter"),
    ("hookflow_store_commit_duration_seconds", "histogram"),
    ("hookflow_workflows", "gauge"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_cpu_seconds_total", "counter"),
    ("process_open_fds", "gauge"),
    ("process_start_time_seconds", "gauge"),
];

fn workflow() -> Arc<Workflow> {
    let text = "title: T\nenabled: true\ntrigger: { type: webhook, mode: sync }\nnodes:\n  - key: call\n    type: request\n    url: http://127.0.0.1:9/x\n  - type: request\n    url: http://127.0.0.1:9/y\n";
    let loaded = load_source(
        "pay",
        Path::new("pay.yaml"),
        text,
        &LoadOptions::process_env(SecretPolicy::Warn),
    );
    loaded
        .workflow
        .unwrap_or_else(|| panic!("loads: {:?}", loaded.diagnostics))
}

fn line_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn every_family_is_listed_before_anything_happened() {
    let text = Metrics::new().encode();
    for (name, kind) in FAMILIES {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP of {name}:\n{text}"
        );
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "no TYPE of {name}:\n{text}"
        );
    }
    assert_eq!(
        line_value(&text, "hookflow_runs{state=\"queued\"}"),
        Some(0.0)
    );
    assert_eq!(
        line_value(&text, "hookflow_workflows{state=\"invalid\"}"),
        Some(0.0)
    );
    assert!(
        !text.contains("workflow="),
        "no series before traffic:\n{text}"
    );
}

#[test]
fn handles_count_into_their_series() {
    let metrics = Metrics::new();
    let wf = workflow();
    let h = metrics.workflow(&wf);
    assert!(Arc::ptr_eq(&h, &metrics.workflow(&wf)), "made once");
    // More statuses than slots: the rest are counted all the same.
    for status in [200, 200, 500, 401, 201, 202, 203, 204, 205, 206, 207] {
        h.request(status, Duration::from_millis(2));
    }
    h.refused("unauthorized");
    h.refused("something_new");
    h.run_finished(RunEnd::Failed, Duration::from_millis(30));
    h.node_try(0, TryOutcome::Status(503));
    h.node_try(0, TryOutcome::Status(200));
    h.node_try(1, TryOutcome::Error);
    h.node_try(7, TryOutcome::Error);
    metrics.unknown().request(404, Duration::from_micros(100));
    metrics.unknown().refused("not_found");
    metrics.runs().running.inc();
    metrics.set_workflows(3, 1, 2);
    metrics.commit(Duration::from_micros(300));
    let text = metrics.encode();
    let v = |s: &str| line_value(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    assert_eq!(
        v("hookflow_webhook_requests_total{workflow=\"pay\",status=\"200\"}"),
        2.0
    );
    assert_eq!(
        v("hookflow_webhook_requests_total{workflow=\"pay\",status=\"207\"}"),
        1.0
    );
    assert_eq!(
        v("hookflow_webhook_requests_total{workflow=\"\",status=\"404\"}"),
        1.0
    );
    assert_eq!(
        v("hookflow_webhook_request_duration_seconds_count{workflow=\"pay\"}"),
        11.0
    );
    assert_eq!(
        v("hookflow_refused_requests_total{workflow=\"pay\",reason=\"unauthorized\"}"),
        1.0
    );
    assert_eq!(
        v("hookflow_refused_requests_total{workflow=\"pay\",reason=\"something_new\"}"),
        1.0
    );
    assert_eq!(
        v("hookflow_refused_requests_total{workflow=\"\",reason=\"not_found\"}"),
        1.0
    );
    assert_eq!(
        v("hookflow_runs_total{workflow=\"pay\",status=\"failed\"}"),
        1.0
    );
    assert_eq!(
        v("hookflow_run_duration_seconds_count{workflow=\"pay\"}"),
        1.0
    );
    assert_eq!(
        v("hookflow_request_node_tries_total{workflow=\"pay\",node=\"call\",outcome=\"5xx\"}"),
        1.0
    );
    assert_eq!(
        v("hookflow_request_node_tries_total{workflow=\"pay\",node=\"call\",outcome=\"2xx\"}"),
        1.0
    );
    assert_eq!(
        v("hookflow_request_node_tries_total{workflow=\"pay\",node=\"node1\",outcome=\"error\"}"),
        1.0
    );
    assert_eq!(v("hookflow_runs{state=\"running\"}"), 1.0);
    assert_eq!(v("hookflow_workflows{state=\"disabled\"}"), 2.0);
    assert_eq!(v("hookflow_store_commit_duration_seconds_count"), 1.0);
}

#[test]
fn the_http_layers_totals_count_once_under_no_workflow() {
    let metrics = Metrics::new();
    metrics.unknown().refused("bad_request");
    metrics.http_layer(&[
        (400, "bad_request", 2, Duration::ZERO),
        (408, "request_timeout", 0, Duration::from_secs(10)),
    ]);
    let text = metrics.encode();
    let refused = "hookflow_refused_requests_total{workflow=\"\",reason=\"bad_request\"}";
    assert_eq!(line_value(&text, refused), Some(3.0), "{text}");
    assert_eq!(
        line_value(
            &text,
            "hookflow_webhook_requests_total{workflow=\"\",status=\"400\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert!(
        !text.contains("request_timeout"),
        "no series for none:\n{text}"
    );
    // The same totals again add nothing; a grown total adds its growth.
    // Observed in the histogram too, once each.
    let observed = "hookflow_webhook_request_duration_seconds_count{workflow=\"\"}";
    assert_eq!(line_value(&text, observed), Some(2.0), "{text}");
    metrics.http_layer(&[(400, "bad_request", 2, Duration::ZERO)]);
    assert_eq!(line_value(&metrics.encode(), refused), Some(3.0));
    metrics.http_layer(&[(400, "bad_request", 5, Duration::ZERO)]);
    assert_eq!(line_value(&metrics.encode(), refused), Some(6.0));
    assert_eq!(line_value(&metrics.encode(), observed), Some(5.0));
}
