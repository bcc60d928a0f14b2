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
    let mut out = fresh();
    rmp_serde::encode::write(&mut out, v)
        .map_err(|e| StoreError::Db(format!("cannot encode: {e}")))?;
    Ok(out)
}

/// A new buffer to encode a value into: records are up to about a
/// kilobyte, so it starts there rather than grow to it, and is cut to
/// size before it waits for the writer ([`super::spare::fitted`]).
/// Records and inputs are written with [`crate::record::pack`] (the bytes
/// [`encode`] writes), into one of these or one the writer handed back
/// ([`super::spare`]).
pub(crate) fn fresh() -> Vec<u8> {
    Vec::with_capacity(1024)
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

/// One of a run's keys kept inside its head: its kind byte, its name (a
/// job's index, a part's name; empty for the stack and the status) and its
/// value.
pub(crate) type Embedded = (u8, Vec<u8>, Vec<u8>);

/// A head's value: the record and the input, each after its length (u32
/// LE), then the first save's keys (kind, name and value, the lengths u32
/// LE): a run that saves once (a run that waits) costs one key, not one per
/// job and part. Later saves write keys of their own, which win.
pub(crate) fn head_value(record: &[u8], input: &[u8], first: &[Embedded]) -> StoreResult<Vec<u8>> {
    let len = |n: usize| {
        u32::try_from(n).map_err(|_| StoreError::Db("a run's head is larger than 4 GiB".into()))
    };
    let extra: usize = first.iter().map(|(_, n, v)| 9 + n.len() + v.len()).sum();
    let mut out = Vec::with_capacity(8 + record.len() + input.len() + extra);
    out.extend_from_slice(&len(record.len())?.to_le_bytes());
    out.extend_from_slice(record);
    out.extend_from_slice(&len(input.len())?.to_le_bytes());
    out.extend_from_slice(input);
    for (kind, name, value) in first {
        out.push(*kind);
        out.extend_from_slice(&len(name.len())?.to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&len(value.len())?.to_le_bytes());
        out.extend_from_slice(value);
    }
    Ok(out)
}

/// A head value's parts, borrowed.
pub(crate) struct HeadParts<'a> {
    pub record: &'a [u8],
    pub input: &'a [u8],
    pub first: Vec<(u8, &'a [u8], &'a [u8])>,
}

/// Reads a head value back.
pub(crate) fn split_head<'a>(key: &[u8], v: &'a [u8]) -> StoreResult<HeadParts<'a>> {
    let damaged = || StoreError::Corrupt {
        key: show_key(key),
        message: "a run's head is cut short".into(),
    };
    let mut rest = v;
    let mut take = |n: usize| -> StoreResult<&'a [u8]> {
        if rest.len() < n {
            return Err(damaged());
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let sized = |take: &mut dyn FnMut(usize) -> StoreResult<&'a [u8]>| -> StoreResult<&'a [u8]> {
        let n: [u8; 4] = take(4)?.try_into().map_err(|_| damaged())?;
        take(u32::from_le_bytes(n) as usize)
    };
    let record = sized(&mut take)?;
    let input = sized(&mut take)?;
    let mut first = Vec::new();
    while let Ok(kind) = take(1) {
        let kind = kind[0];
        let name = sized(&mut take)?;
        let value = sized(&mut take)?;
        first.push((kind, name, value));
    }
    Ok(HeadParts {
        record,
        input,
        first,
    })
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
        let first = vec![
            (b'j', 7u32.to_be_bytes().to_vec(), b"job".to_vec()),
            (b't', Vec::new(), b"st".to_vec()),
        ];
        let head = head_value(b"rec", b"input", &first).expect("head");
        let parts = split_head(b"h", &head).expect("split");
        assert_eq!((parts.record, parts.input), (&b"rec"[..], &b"input"[..]));
        assert_eq!(
            parts.first,
            vec![
                (b'j', &7u32.to_be_bytes()[..], &b"job"[..]),
                (b't', &b""[..], &b"st"[..])
            ]
        );
        assert!(split_head(b"h", &head[..5]).is_err(), "cut short");
        assert!(
            split_head(b"h", &head[..head.len() - 1]).is_err(),
            "a saved key cut short"
        );
        assert!(split_head(b"h", b"").is_err());
    }
}
