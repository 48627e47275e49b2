//! The message record stored in waiting lists, the delayed set and lease hashes:
//!
//! | bytes | field |
//! | --- | --- |
//! | 1 | priority (0-9) |
//! | 1 | flags: bit 0 `acks_late`, bit 1 `reject_on_worker_lost` |
//! | 1 | deliveries so far (saturates at 255) |
//! | 2 | id length, big endian |
//! | n | task id |
//! | rest | encoded envelope |
//!
//! Keeping the whole message in one value means one Redis operation moves it.

use hippo_queue_core::BackendError;
use hippo_queue_core::backend::DeliveryFlags;

/// Longest task id a record can carry.
pub(crate) const MAX_ID_LEN: usize = u16::MAX as usize;

pub(crate) fn flags_byte(flags: DeliveryFlags) -> u8 {
    u8::from(flags.acks_late) | (u8::from(flags.reject_on_worker_lost) << 1)
}

pub(crate) fn encode(
    priority: u8,
    flags: DeliveryFlags,
    id: &str,
    payload: &[u8],
) -> Result<Vec<u8>, BackendError> {
    if id.len() > MAX_ID_LEN {
        return Err(BackendError::backend(format!(
            "task id of {} bytes is longer than the {MAX_ID_LEN} bytes allowed",
            id.len()
        )));
    }
    let mut r = Vec::with_capacity(5 + id.len() + payload.len());
    r.push(priority.min(9));
    r.push(flags_byte(flags));
    r.push(0);
    r.extend_from_slice(&(id.len() as u16).to_be_bytes());
    r.extend_from_slice(id.as_bytes());
    r.extend_from_slice(payload);
    Ok(r)
}

/// A decoded record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub priority: u8,
    pub flags: DeliveryFlags,
    pub deliveries: u32,
    pub id: String,
    pub payload: Vec<u8>,
}

pub(crate) fn decode(mut r: Vec<u8>) -> Result<Record, BackendError> {
    if r.len() < 5 {
        return Err(BackendError::protocol(format!(
            "record of {} bytes is truncated",
            r.len()
        )));
    }
    let id_len = usize::from(u16::from_be_bytes([r[3], r[4]]));
    if r.len() < 5 + id_len {
        return Err(BackendError::protocol("record id is truncated"));
    }
    let id = String::from_utf8_lossy(&r[5..5 + id_len]).into_owned();
    let payload = r.split_off(5 + id_len);
    Ok(Record {
        priority: r[0].min(9),
        flags: DeliveryFlags {
            acks_late: r[1] & 1 != 0,
            reject_on_worker_lost: r[1] & 2 != 0,
        },
        deliveries: u32::from(r[2]),
        id,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let flags = DeliveryFlags {
            acks_late: true,
            reject_on_worker_lost: true,
        };
        let r = encode(7, flags, "task-1", b"Mpayload").unwrap();
        assert_eq!(&r[..5], &[7, 3, 0, 0, 6]);
        let d = decode(r).unwrap();
        assert_eq!(d.id, "task-1");
        assert_eq!(d.payload, b"Mpayload");
        assert_eq!((d.priority, d.deliveries), (7, 0));
        assert_eq!(d.flags, flags);
        assert!(decode(vec![1, 2]).is_err());
        assert!(decode(vec![1, 2, 0, 0, 9, b'x']).is_err());
    }
}
