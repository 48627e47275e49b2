//! Reading script replies.

use hippo_queue_core::BackendError;
use redis::Value;

fn protocol(what: &str, v: &Value) -> BackendError {
    BackendError::protocol(format!("expected {what}, got {v:?}"))
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
    String::from_utf8(bytes(v)?).map_err(|e| BackendError::protocol(format!("not UTF-8: {e}")))
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

/// Splits a dead-letter entry, `<reason length>:<reason><record>`.
pub(crate) fn dead_letter(entry: &[u8]) -> Option<(String, &[u8])> {
    let colon = entry.iter().position(|c| *c == b':')?;
    let len: usize = std::str::from_utf8(&entry[..colon]).ok()?.parse().ok()?;
    let rest = &entry[colon + 1..];
    if rest.len() < len {
        return None;
    }
    Some((
        String::from_utf8_lossy(&rest[..len]).into_owned(),
        &rest[len..],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_entries_split() {
        let (reason, rec) = dead_letter(b"11:worker lost\x01\x02rest").unwrap();
        assert_eq!(reason, "worker lost");
        assert_eq!(rec, b"\x01\x02rest");
        assert!(dead_letter(b"garbage").is_none());
        assert!(dead_letter(b"99:short").is_none());
    }
}
