//! Reading script replies.

use hippo_queue_core::BackendError;
use redis::Value;

fn protocol(what: &str, v: &Value) -> BackendError {
    BackendError::Protocol(format!("expected {what}, got {v:?}"))
}

pub(crate) fn array(v: Value) -> Result<Vec<Value>, BackendError> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(protocol("an array", &other)),
    }
}

pub(crate) fn bytes(v: Value) -> Result<Vec<u8>, BackendError> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        Value::Int(i) => Ok(i.to_string().into_bytes()),
        other => Err(protocol("a string", &other)),
    }
}

pub(crate) fn string(v: Value) -> Result<String, BackendError> {
    String::from_utf8(bytes(v)?).map_err(|e| BackendError::Protocol(format!("not UTF-8: {e}")))
}

pub(crate) fn int(v: &Value) -> Result<i64, BackendError> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .map(|f| f as i64)
            .ok_or_else(|| protocol("an integer", v)),
        Value::Double(d) => Ok(*d as i64),
        other => Err(protocol("an integer", other)),
    }
}

/// Parses a dead-letter entry: `<len>:<id><len>:<reason><envelope>`.
pub(crate) fn dead_letter(entry: &[u8]) -> Option<(String, String, Vec<u8>)> {
    fn field(b: &[u8]) -> Option<(String, &[u8])> {
        let colon = b.iter().position(|c| *c == b':')?;
        let len: usize = std::str::from_utf8(&b[..colon]).ok()?.parse().ok()?;
        let rest = &b[colon + 1..];
        if rest.len() < len {
            return None;
        }
        Some((
            String::from_utf8_lossy(&rest[..len]).into_owned(),
            &rest[len..],
        ))
    }
    let (id, rest) = field(entry)?;
    let (reason, body) = field(rest)?;
    Some((id, reason, body.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_entries_parse() {
        let e = b"3:abc11:worker lost\x01\x02payload";
        let (id, reason, body) = dead_letter(e).unwrap();
        assert_eq!((id.as_str(), reason.as_str()), ("abc", "worker lost"));
        assert_eq!(body, b"\x01\x02payload");
        assert!(dead_letter(b"garbage").is_none());
        assert!(dead_letter(b"99:short").is_none());
    }
}
