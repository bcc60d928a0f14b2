//! A record's (and a run's input's) stored bytes, written straight from
//! their fields: the MessagePack `rmp_serde` writes for them (struct fields
//! by position, see `embedded::codec`) without going through `Serialize`,
//! which cost ~7 % of a sync request's instructions. Read back with
//! `rmp_serde` as before. The tests compare both byte for byte, on records
//! with every field set; a field added to one of these structs fails to
//! compile in them until it is set there, and then fails them until it is
//! written here too.

use super::{ExecutionRecord, JobRecord, ResponseRecord, TryRecord};
use hookflow_model::request::{RunInput, TriggerRequest};
use rmp::encode::{self, ByteBuf};
use serde_json::{Number, Value as Json};

/// Appends `record`, as `rmp_serde` would write it, to `out`.
pub(crate) fn record(out: Vec<u8>, record: &ExecutionRecord) -> Vec<u8> {
    let mut w = Packer(ByteBuf::from(out));
    w.record(record);
    w.0.into_vec()
}

/// Appends a run's `input`, as `rmp_serde` would write it, to `out`.
pub(crate) fn input(out: Vec<u8>, input: &RunInput) -> Vec<u8> {
    let mut w = Packer(ByteBuf::from(out));
    w.array(3);
    w.trigger(&input.trigger);
    w.json(&input.vars);
    w.array(input.secret_headers.len());
    for name in &input.secret_headers {
        w.str(name);
    }
    w.0.into_vec()
}

/// A buffer that cannot fail (`ByteBuf`'s error is `Infallible`).
struct Packer(ByteBuf);

/// A length as MessagePack takes it (`rmp_serde` casts the same way; no
/// value in memory comes near 4 G items).
fn len32(n: usize) -> u32 {
    n as u32
}

impl Packer {
    fn record(&mut self, r: &ExecutionRecord) {
        self.array(12);
        self.str(&r.id);
        self.str(&r.workflow);
        self.str(&r.version);
        self.str(r.status.as_str());
        self.uint(r.started_at.millis());
        match r.finished_at {
            Some(t) => self.uint(t.millis()),
            None => self.nil(),
        }
        self.uint(r.started_ms);
        match &r.trigger {
            Some(t) => self.trigger(t),
            None => self.nil(),
        }
        self.array(r.jobs.len());
        for job in &r.jobs {
            self.job(job);
        }
        match &r.response {
            Some(resp) => self.response(resp),
            None => self.nil(),
        }
        self.opt_str(r.retry_of.as_deref());
        self.opt_str(r.error.as_deref());
    }

    fn trigger(&mut self, t: &TriggerRequest) {
        let (source, body) = t.stored_body();
        self.array(7);
        self.str(&t.method);
        self.str(&t.path);
        self.array(t.headers.len());
        for (name, value) in &t.headers {
            self.array(2);
            self.str(name);
            self.str(value);
        }
        self.json(&t.query);
        self.str(&t.raw_body);
        self.uint(u64::from(source));
        match body {
            Some(b) => self.json(b),
            None => self.nil(),
        }
    }

    fn job(&mut self, j: &JobRecord) {
        self.array(9);
        self.opt_str(j.key.as_deref());
        self.str(&j.kind);
        self.str(j.status.as_str());
        self.json(&j.result);
        self.opt_str(j.error.as_deref());
        self.uint(j.started_at.millis());
        self.uint(j.duration_ms);
        self.bool(j.truncated);
        self.array(j.tries.len());
        for t in &j.tries {
            self.attempt(t);
        }
    }

    fn attempt(&mut self, t: &TryRecord) {
        self.array(8);
        self.uint(u64::from(t.attempt));
        self.uint(t.started_at.millis());
        self.uint(t.duration_ms);
        self.str(t.outcome.as_str());
        match t.status {
            Some(s) => self.uint(u64::from(s)),
            None => self.nil(),
        }
        self.map(t.headers.len());
        for (k, v) in &t.headers {
            self.str(k);
            self.json(v);
        }
        self.json(&t.body);
        self.opt_str(t.error.as_deref());
    }

    fn response(&mut self, r: &ResponseRecord) {
        self.array(3);
        self.uint(u64::from(r.status));
        self.map(r.headers.len());
        for (k, v) in &r.headers {
            self.str(k);
            self.str(v);
        }
        self.json(&r.body);
    }

    fn json(&mut self, v: &Json) {
        match v {
            Json::Null => self.nil(),
            Json::Bool(b) => self.bool(*b),
            Json::Number(n) => self.number(n),
            Json::String(s) => self.str(s),
            Json::Array(items) => {
                self.array(items.len());
                for item in items {
                    self.json(item);
                }
            }
            Json::Object(map) => {
                self.map(map.len());
                for (k, v) in map {
                    self.str(k);
                    self.json(v);
                }
            }
        }
    }

    /// As `serde_json::Number` serializes: an unsigned integer, else a
    /// signed one, else a float.
    fn number(&mut self, n: &Number) {
        if let Some(u) = n.as_u64() {
            self.uint(u);
        } else if let Some(i) = n.as_i64() {
            let Ok(_) = encode::write_sint(&mut self.0, i);
        } else if let Some(f) = n.as_f64() {
            let Ok(()) = encode::write_f64(&mut self.0, f);
        } else {
            self.nil();
        }
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.str(s),
            None => self.nil(),
        }
    }

    /// A string: its length's marker (MessagePack's fixstr, str 8, str 16
    /// or str 32, as `rmp::encode::write_str_len` picks them) and its
    /// bytes, into room made once: through `rmp::encode::write_str` a
    /// string took ~75 instructions (a W1 record has 30), mostly checks
    /// for room byte by byte; ~42 this way.
    fn str(&mut self, s: &str) {
        let out = self.0.as_mut_vec();
        let len = s.len();
        out.reserve(5 + len);
        if len < 32 {
            out.push(0xa0 | len as u8);
        } else if len < 256 {
            out.extend_from_slice(&[0xd9, len as u8]);
        } else if len < 65_536 {
            out.push(0xda);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0xdb);
            out.extend_from_slice(&len32(len).to_be_bytes());
        }
        out.extend_from_slice(s.as_bytes());
    }

    /// An unsigned integer in the fewest bytes, as `rmp::encode::write_uint`
    /// writes it (positive fixint, uint 8, 16, 32 or 64), into room made
    /// once rather than checked byte by byte.
    fn uint(&mut self, v: u64) {
        let out = self.0.as_mut_vec();
        if v < 128 {
            out.push(v as u8);
        } else if v < 256 {
            out.extend_from_slice(&[0xcc, v as u8]);
        } else if v < 65_536 {
            out.push(0xcd);
            out.extend_from_slice(&(v as u16).to_be_bytes());
        } else if v <= u64::from(u32::MAX) {
            out.push(0xce);
            out.extend_from_slice(&(v as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }

    fn bool(&mut self, v: bool) {
        self.0.as_mut_vec().push(if v { 0xc3 } else { 0xc2 });
    }

    fn nil(&mut self) {
        self.0.as_mut_vec().push(0xc0);
    }

    /// An array's length (fixarray, array 16 or array 32), as
    /// `rmp::encode::write_array_len` writes it.
    fn array(&mut self, len: usize) {
        self.len_marker(len, 0x90, 0xdc);
    }

    /// A map's length (fixmap, map 16 or map 32), as
    /// `rmp::encode::write_map_len` writes it.
    fn map(&mut self, len: usize) {
        self.len_marker(len, 0x80, 0xde);
    }

    /// `fix | len` under 16; else the 16-bit marker and the length, or the
    /// 32-bit marker (the next one) and the length.
    fn len_marker(&mut self, len: usize, fix: u8, marker16: u8) {
        let out = self.0.as_mut_vec();
        if len < 16 {
            out.push(fix | len as u8);
        } else if len < 65_536 {
            out.push(marker16);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(marker16 + 1);
            out.extend_from_slice(&len32(len).to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests;
