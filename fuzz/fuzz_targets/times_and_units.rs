//! Times, durations and sizes as written in requests, files and flags.
#![no_main]

use hookflow_model::time::{millis_to_rfc3339, parse_rfc3339};
use hookflow_model::units::{parse_duration, parse_size};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(ms) = parse_rfc3339(text) {
        // What parses formats and parses back to the same instant (before
        // the year 10000, which the format cannot write).
        if ms < 253_402_300_800_000 {
            assert_eq!(parse_rfc3339(&millis_to_rfc3339(ms)), Some(ms), "{text}");
        }
    }
    if let Ok(d) = parse_duration(text) {
        let _ = hookflow_model::time::deadline_after(d);
    }
    let _ = parse_size(text);
});
