use super::super::{
    ExecutionRecord, JobRecord, JobStatus, ResponseRecord, RunStatus, TryOutcome, TryRecord,
};
use hookflow_model::request::{BodySource, RunInput, TriggerRequest};
use hookflow_model::time::Timestamp;
use serde_json::{json, Value as Json};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Strings at and around each of MessagePack's length markers.
fn strings() -> Vec<String> {
    [0, 1, 31, 32, 255, 256, 65_535, 65_536]
        .into_iter()
        .map(|n| "é".repeat(n / 2) + &"x".repeat(n % 2))
        .collect()
}

/// Unsigned integers at and around each of MessagePack's integer widths.
const UNSIGNED_EDGES: [u64; 11] = [
    0,
    1,
    127,
    128,
    255,
    256,
    65_535,
    65_536,
    u32::MAX as u64,
    u32::MAX as u64 + 1,
    u64::MAX,
];

/// Every kind of JSON value, numbers at and around each integer width.
fn values() -> Json {
    let negative = [
        -1i64,
        -32,
        -33,
        -128,
        -129,
        -32_768,
        -32_769,
        i64::from(i32::MIN),
        i64::from(i32::MIN) - 1,
        i64::MIN,
    ];
    let ints: Vec<Json> = UNSIGNED_EDGES
        .into_iter()
        .map(|n| json!(n))
        .chain(negative.into_iter().map(|n| json!(n)))
        .collect();
    let wide: serde_json::Map<String, Json> =
        (0..20).map(|i| (format!("k{i:02}"), json!(i))).collect();
    json!({
        "null": null,
        "bools": [true, false],
        "ints": ints,
        "floats": [1.5, -0.0, 1e300, -2.25],
        "strings": strings(),
        "nested": {"a": [[], {}, [1, [2, {"b": "c"}]]]},
        "wide": wide,
    })
}

fn attempt(status: Option<u16>, outcome: TryOutcome) -> TryRecord {
    TryRecord {
        attempt: 70_000,
        started_at: Timestamp(1_764_000_000_123),
        duration_ms: 12,
        outcome,
        status,
        headers: [
            ("content-type".to_string(), json!("application/json")),
            ("x-n".to_string(), json!(5)),
        ]
        .into_iter()
        .collect(),
        body: values(),
        error: status.is_none().then(|| "connection refused".to_string()),
    }
}

fn job(status: JobStatus, tries: Vec<TryRecord>) -> JobRecord {
    JobRecord {
        key: Some("fetch".into()),
        kind: Cow::Borrowed("request"),
        status,
        result: values(),
        error: Some("upstream said 500".into()),
        started_at: Timestamp(1_764_000_000_000),
        duration_ms: u64::MAX,
        truncated: true,
        tries,
    }
}

fn trigger(body_source: BodySource) -> TriggerRequest {
    let (body, raw_body) = match body_source {
        BodySource::JsonOfRaw => (json!({"order": {"id": "A-1"}}), r#"{"order":{"id":"A-1"}}"#),
        // Not parsed yet: stored as the parsed body is, read back parsed.
        BodySource::JsonUnparsed => (Json::Null, r#"{"order":{"id":"A-1"}}"#),
        BodySource::TextOfRaw => (json!("<xml/>"), "<xml/>"),
        BodySource::Stored => (values(), "a=1&b=2"),
    };
    TriggerRequest {
        method: "POST".into(),
        path: "/api/webhook:trigger/pay".into(),
        headers: (0..20)
            .map(|i| (format!("x-h{i}"), "v".repeat(i * 20)))
            .collect(),
        query: json!({"a": "1", "b": ["2", "3"]}),
        body,
        raw_body: raw_body.into(),
        body_source,
    }
}

/// A record with every field set (`full`) or every optional one empty.
fn record(status: RunStatus, source: BodySource, full: bool) -> ExecutionRecord {
    let response_headers: BTreeMap<_, _> = (0..17)
        .map(|i| (format!("h{i:02}").into(), format!("{i}").into()))
        .chain([("content-type".into(), "application/json".into())])
        .collect();
    ExecutionRecord {
        id: "01a24213-0d38-7698-abb8-f64c6970fb2f".into(),
        workflow: "pay".into(),
        version: "0ca5f22349b36494".into(),
        status,
        started_at: Timestamp(1_764_000_000_000),
        finished_at: full.then_some(Timestamp(1_764_000_000_999)),
        started_ms: 1_764_000_000_000,
        trigger: full.then(|| trigger(source)),
        jobs: if full {
            vec![
                job(
                    JobStatus::Resolved,
                    vec![
                        attempt(Some(200), TryOutcome::Success),
                        attempt(Some(302), TryOutcome::Redirect),
                        attempt(Some(404), TryOutcome::ClientError),
                        attempt(Some(503), TryOutcome::ServerError),
                        attempt(None, TryOutcome::Error),
                        attempt(None, TryOutcome::Refused),
                    ],
                ),
                job(JobStatus::Running, Vec::new()),
                job(JobStatus::Waiting, Vec::new()),
                job(JobStatus::Failed, Vec::new()),
                job(JobStatus::Cancelled, Vec::new()),
                JobRecord {
                    key: None,
                    kind: Cow::Owned("condition".into()),
                    result: Json::Null,
                    error: None,
                    truncated: false,
                    ..job(JobStatus::Resolved, Vec::new())
                },
            ]
        } else {
            Vec::new()
        },
        response: full.then(|| ResponseRecord {
            status: 201,
            headers: response_headers,
            // Past the 16-bit array length, once.
            body: Arc::new(json!([
                values(),
                (0..70_000).map(|i| i % 7).collect::<Vec<_>>()
            ])),
        }),
        retry_of: full.then(|| "01a24213-0000-7000-8000-000000000000".into()),
        error: full.then(|| "a node failed".into()),
    }
}

fn every_record() -> Vec<ExecutionRecord> {
    let sources = [
        BodySource::JsonOfRaw,
        BodySource::JsonUnparsed,
        BodySource::TextOfRaw,
        BodySource::Stored,
    ];
    let mut out = Vec::new();
    for status in RunStatus::ALL {
        for source in sources {
            out.push(record(status, source, true));
        }
        out.push(record(status, BodySource::Stored, false));
    }
    out
}

#[test]
fn records_are_written_as_rmp_serde_writes_them() {
    for r in every_record() {
        let expected = rmp_serde::to_vec(&r).expect("rmp_serde encodes");
        let packed = super::record(Vec::new(), &r);
        assert!(
            packed == expected,
            "{:?} ({} jobs): {} bytes packed, {} from rmp_serde, first difference at {:?}",
            r.status,
            r.jobs.len(),
            packed.len(),
            expected.len(),
            packed.iter().zip(&expected).position(|(a, b)| a != b)
        );
    }
}

#[test]
fn a_packed_record_reads_back_whole_after_what_the_buffer_held() {
    for r in every_record() {
        let packed = super::record(b"kept".to_vec(), &r);
        assert_eq!(&packed[..4], b"kept");
        let back: ExecutionRecord = rmp_serde::from_slice(&packed[4..]).expect("decodes");
        assert_eq!(back, r);
    }
}

#[test]
fn inputs_are_written_as_rmp_serde_writes_them() {
    for source in [
        BodySource::JsonOfRaw,
        BodySource::JsonUnparsed,
        BodySource::TextOfRaw,
        BodySource::Stored,
    ] {
        for (vars, secret_headers) in [
            (values(), vec!["x-signature".to_string(), "s".repeat(300)]),
            (Json::Null, Vec::new()),
        ] {
            let input = RunInput {
                trigger: trigger(source),
                vars,
                secret_headers,
            };
            let expected = rmp_serde::to_vec(&input).expect("rmp_serde encodes");
            let packed = super::input(b"kept".to_vec(), &input);
            assert_eq!(&packed[..4], b"kept");
            assert!(packed[4..] == expected[..], "{source:?}: the input differs");
            let back: RunInput = rmp_serde::from_slice(&packed[4..]).expect("decodes");
            assert_eq!(back, input);
        }
    }
}

/// Lengths, integers and the two constants at and around each of
/// MessagePack's markers are written as `rmp` writes them.
#[test]
fn numbers_and_lengths_are_written_as_rmp_writes_them() {
    use rmp::encode;

    for v in UNSIGNED_EDGES {
        let mut ours = super::Packer(rmp::encode::ByteBuf::new());
        ours.uint(v);
        let mut theirs = Vec::new();
        encode::write_uint(&mut theirs, v).expect("writes");
        assert_eq!(ours.0.into_vec(), theirs, "uint {v}");
    }
    for len in [0usize, 1, 15, 16, 65_535, 65_536, u32::MAX as usize] {
        let mut ours = super::Packer(rmp::encode::ByteBuf::new());
        ours.array(len);
        ours.map(len);
        let mut theirs = Vec::new();
        encode::write_array_len(&mut theirs, len as u32).expect("writes");
        encode::write_map_len(&mut theirs, len as u32).expect("writes");
        assert_eq!(ours.0.into_vec(), theirs, "length {len}");
    }
    for v in [true, false] {
        let mut ours = super::Packer(rmp::encode::ByteBuf::new());
        ours.bool(v);
        ours.nil();
        let mut theirs = Vec::new();
        encode::write_bool(&mut theirs, v).expect("writes");
        encode::write_nil(&mut theirs).expect("writes");
        assert_eq!(ours.0.into_vec(), theirs, "bool {v} and nil");
    }
}
