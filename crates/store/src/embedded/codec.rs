//! How values are stored: MessagePack, struct fields by position.

use crate::record::RunStatus;
use crate::{StoreError, StoreResult};
use serde::{Deserialize, Serialize};

/// A value as stored: MessagePack, struct fields by position. It copies
/// strings where JSON escapes them (a record's encoding was a tenth of a
/// request's instructions as JSON), and leaves field names out (a fifth of
/// a record's bytes). A field added to a stored struct goes last, with
/// `#[serde(default)]`, so that older values (shorter arrays) still decode;
/// no stored field may be skipped when serialized.
pub(crate) fn encode<T: Serialize + ?Sized>(v: &T) -> StoreResult<Vec<u8>> {
    // Records are about a kilobyte: start there rather than grow to it.
    let mut out = Vec::with_capacity(1024);
    rmp_serde::encode::write(&mut out, v)
        .map_err(|e| StoreError::Db(format!("cannot encode: {e}")))?;
    Ok(out)
}

/// A stored value; `key` names it in the error when it does not decode.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(key: &[u8], v: &[u8]) -> StoreResult<T> {
    rmp_serde::from_slice(v).map_err(|e| StoreError::Corrupt {
        key: show_key(key),
        message: e.to_string(),
    })
}

/// A key for logs: its prefix letter and the rest in hex.
pub(crate) fn show_key(key: &[u8]) -> String {
    match key.split_first() {
        Some((p, rest)) if p.is_ascii_alphabetic() => {
            let hex: String = rest.iter().map(|b| format!("{b:02x}")).collect();
            format!("{}:{hex}", *p as char)
        }
        _ => key.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// A head's value: the record's length (u32 LE), the record, the input;
/// the record reads without decoding the input (lists read many heads).
pub(crate) fn head_value(record: &[u8], input: &[u8]) -> StoreResult<Vec<u8>> {
    let len = u32::try_from(record.len())
        .map_err(|_| StoreError::Db("a run's record is larger than 4 GiB".into()))?;
    let mut v = Vec::with_capacity(4 + record.len() + input.len());
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(record);
    v.extend_from_slice(input);
    Ok(v)
}

/// A head's record and input parts.
pub(crate) fn split_head<'a>(key: &[u8], v: &'a [u8]) -> StoreResult<(&'a [u8], &'a [u8])> {
    let damaged = || StoreError::Corrupt {
        key: show_key(key),
        message: "a run's head is cut short".into(),
    };
    let len: [u8; 4] = v
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(damaged)?;
    let end = 4usize.saturating_add(u32::from_le_bytes(len) as usize);
    Ok((v.get(4..end).ok_or_else(damaged)?, &v[end..]))
}

/// The `t` entry of a run that saved progress: where it is and, waiting,
/// when it wakes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunState {
    pub status: RunStatus,
    pub wake_at: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_damage_names_its_key() {
        let s = RunState {
            status: RunStatus::Waiting,
            wake_at: Some(42),
        };
        let bytes = encode(&s).expect("encode");
        assert_eq!(decode::<RunState>(b"t1", &bytes).expect("decode"), s);
        let err = decode::<RunState>(&[b'h', 0xab], b"\xc1").expect_err("garbage");
        assert!(err.to_string().contains("h:ab"), "{err}");
        let head = head_value(b"rec", b"input").expect("head");
        assert_eq!(
            split_head(b"h", &head).expect("split"),
            (&b"rec"[..], &b"input"[..])
        );
        assert!(split_head(b"h", &head[..5]).is_err(), "cut short");
        assert!(split_head(b"h", b"").is_err());
    }
}
