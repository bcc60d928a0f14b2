use super::*;
use hookflow_model::request::BodySource;
use serde_json::json;

#[test]
fn stored_requests_leave_out_bodies_they_can_parse_again() {
    let base = TriggerRequest {
        method: "POST".into(),
        path: "/p".into(),
        headers: vec![("content-type", "application/json")].into(),
        query: json!({}),
        ..TriggerRequest::default()
    };
    let cases = [
        (
            BodySource::JsonOfRaw,
            json!({"a": [1, 2]}),
            r#"{"a":[1,2]}"#,
        ),
        (BodySource::TextOfRaw, json!("<x/>"), "<x/>"),
        (BodySource::Stored, json!({"form": "1"}), "form=1"),
        (BodySource::Stored, Json::Null, ""),
    ];
    for (source, body, raw) in cases {
        let r = TriggerRequest {
            body: body.clone(),
            raw_body: raw.into(),
            body_source: source,
            ..base.clone()
        };
        let bytes = rmp_serde::to_vec(&r).expect("encode");
        let stored_twice = bytes
            .windows(raw.len().max(1))
            .filter(|w| *w == raw.as_bytes())
            .count();
        if source != BodySource::Stored {
            assert_eq!(stored_twice, 1, "{source:?}: the body is not stored twice");
        }
        let back: TriggerRequest = rmp_serde::from_slice(&bytes).expect("decode");
        assert_eq!(back, r, "{source:?}");
    }
}

#[test]
fn kept_results_are_cut_to_the_cap() {
    let mut job = JobRecord {
        key: None,
        kind: "request".into(),
        status: JobStatus::Resolved,
        result: Json::Null,
        error: None,
        started_at: Timestamp(0),
        duration_ms: 0,
        truncated: false,
        tries: Vec::new(),
    };
    let small = json!({"status": 200, "body": {"ok": true}});
    job.keep_result(small.clone(), 64);
    assert_eq!((job.result.clone(), job.truncated), (small, false));
    let big = json!({"body": "é".repeat(100)});
    let text = serde_json::to_string(&big).expect("json");
    job.keep_result(big, 51);
    assert!(job.truncated);
    let kept = job.result.as_str().expect("kept as text");
    assert!(kept.len() <= 51 && text.starts_with(kept), "{kept}");
    // Exactly at the cap is kept whole.
    let exact = json!("x".repeat(10));
    job.truncated = false;
    job.keep_result(exact.clone(), 12);
    assert_eq!((job.result.clone(), job.truncated), (exact, false));
}

#[test]
fn tries_are_stored_whole_and_shown_without_empty_parts() {
    let answered = TryRecord {
        attempt: 1,
        started_at: Timestamp(1_700_000_000_000),
        duration_ms: 12,
        outcome: TryOutcome::of_status(503),
        status: Some(503),
        headers: json!({"content-type": "application/json"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        body: json!({"busy": true}),
        error: None,
    };
    let failed = TryRecord {
        attempt: 2,
        outcome: TryOutcome::Error,
        status: None,
        headers: serde_json::Map::new(),
        body: Json::Null,
        error: Some("timed out".into()),
        ..answered.clone()
    };
    for t in [&answered, &failed] {
        let bytes = rmp_serde::to_vec(t).expect("encode");
        let back: TryRecord = rmp_serde::from_slice(&bytes).expect("decode");
        assert_eq!(&back, t);
        let text = serde_json::to_value(t).expect("json");
        let back: TryRecord = serde_json::from_value(text).expect("from json");
        assert_eq!(&back, t);
    }
    assert_eq!(
        serde_json::to_value(&answered).expect("json"),
        json!({"attempt": 1, "started_at": "2023-11-14T22:13:20.000Z", "duration_ms": 12,
               "outcome": "5xx", "status": 503, "headers": {"content-type": "application/json"},
               "body": {"busy": true}})
    );
    assert_eq!(
        serde_json::to_value(&failed).expect("json"),
        json!({"attempt": 2, "started_at": "2023-11-14T22:13:20.000Z", "duration_ms": 12,
               "outcome": "error", "error": "timed out"})
    );
    // A job stored before tries existed still reads.
    #[derive(Serialize)]
    struct OldJob {
        key: Option<String>,
        #[serde(rename = "type")]
        kind: &'static str,
        status: JobStatus,
        result: Json,
        error: Option<String>,
        started_at: Timestamp,
        duration_ms: u64,
        truncated: bool,
    }
    let old = rmp_serde::to_vec(&OldJob {
        key: Some("erp".into()),
        kind: "request",
        status: JobStatus::Resolved,
        result: json!({"status": 200}),
        error: None,
        started_at: Timestamp(5),
        duration_ms: 1,
        truncated: false,
    })
    .expect("encode");
    let job: JobRecord = rmp_serde::from_slice(&old).expect("an old job decodes");
    assert!(job.tries.is_empty());
    assert_eq!(job.key.as_deref(), Some("erp"));
}

#[test]
fn try_bodies_count_within_the_cap() {
    let t = |body: Json| TryRecord {
        attempt: 1,
        started_at: Timestamp(0),
        duration_ms: 0,
        outcome: TryOutcome::Success,
        status: Some(200),
        headers: serde_json::Map::new(),
        body,
        error: None,
    };
    let mut job = JobRecord {
        key: None,
        kind: "request".into(),
        status: JobStatus::Resolved,
        result: json!({"status": 200}),
        error: None,
        started_at: Timestamp(0),
        duration_ms: 0,
        truncated: false,
        tries: vec![
            t(json!("0123456789")),
            t(Json::Null),
            t(json!({"é": "xxxx"})),
        ],
    };
    let small = job.clone();
    job.keep_try_bodies(1000);
    assert_eq!(job, small, "all fits");
    // 14 bytes of result, 12 of the first body: 4 left for the last one.
    job.keep_try_bodies(30);
    assert!(job.truncated);
    assert_eq!(job.tries[0].body, json!("0123456789"));
    assert_eq!(job.tries[1].body, Json::Null);
    assert_eq!(job.tries[2].body, json!("{\"é"));
}

#[test]
fn a_damaged_json_body_is_an_error_not_a_null() {
    let r = TriggerRequest {
        raw_body: "{not json".into(),
        body_source: BodySource::JsonOfRaw,
        ..TriggerRequest::default()
    };
    let bytes = rmp_serde::to_vec(&r).expect("encode");
    assert!(rmp_serde::from_slice::<TriggerRequest>(&bytes).is_err());
}
