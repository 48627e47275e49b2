//! The wire format shared by messages and stored results: MessagePack (rmp-serde),
//! compressed with zstd above a size threshold, behind a one-byte format tag.
//!
//! | first byte | body |
//! | --- | --- |
//! | `b'M'` | MessagePack |
//! | `b'Z'` | zstd frame of MessagePack, decompressed size capped |
//!
//! Decoding never panics: bytes that are not one of these frames, a body that is not
//! valid MessagePack for the expected type, or a zstd frame that would expand past the
//! cap are all a [`CodecError`].
//!
//! ```
//! use hippo_queue_core::codec::{Codec, CodecError};
//! let codec = Codec::default();
//! let bytes = codec.encode(&vec![1u32, 2, 3], true).unwrap();
//! let back: Vec<u32> = codec.decode(&bytes).unwrap();
//! assert_eq!(back, [1, 2, 3]);
//! assert!(matches!(codec.decode::<Vec<u32>>(b"garbage"), Err(CodecError::UnknownFormat(b'g'))));
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

const TAG_MSGPACK: u8 = b'M';
const TAG_ZSTD: u8 = b'Z';

/// Why a payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The payload is empty.
    #[error("empty payload")]
    Empty,
    /// The first byte is not a known format tag: the bytes were not written by hippo-queue.
    #[error("unknown payload format tag 0x{0:02x}: not a hippo-queue message")]
    UnknownFormat(u8),
    /// The body is not valid MessagePack for the expected type.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// The compressed body is corrupt or expands past the decompressed size cap.
    #[error("corrupt or oversized compressed payload (cap {cap} bytes): {reason}")]
    Decompress {
        /// The cap in force.
        cap: usize,
        /// What zstd reported.
        reason: String,
    },
    /// The value could not be serialised.
    #[error("cannot serialise value: {0}")]
    Encode(String),
    /// The encoded payload is larger than the configured maximum message size.
    #[error("payload of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// Configured maximum.
        max: usize,
    },
}

/// Encoding settings: when to compress and how much a payload may expand to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    /// Bodies of at least this many bytes are compressed (when compression is allowed).
    pub compression_threshold: usize,
    /// The largest body accepted, before compression when encoding and after
    /// decompression when decoding.
    pub max_size: usize,
    /// zstd level.
    pub level: i32,
}

impl Default for Codec {
    fn default() -> Self {
        Codec {
            compression_threshold: 16 * 1024,
            max_size: 64 * 1024 * 1024,
            level: 3,
        }
    }
}

impl Codec {
    /// Encodes `value`, compressing it when `compress` is true and the body reaches the
    /// threshold.
    pub fn encode<T: Serialize + ?Sized>(
        &self,
        value: &T,
        compress: bool,
    ) -> Result<Vec<u8>, CodecError> {
        self.encode_as(value, compress, true)
    }

    /// Encodes `value` like [`Codec::encode`], with struct fields by position
    /// (MessagePack arrays) instead of by name: about a third of the size for the
    /// crate's own records (envelopes, result records), whose fields only ever grow
    /// at the end with `#[serde(default)]`. [`Codec::decode`] reads both forms.
    ///
    /// ```
    /// use hippo_queue_core::codec::Codec;
    /// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    /// struct Point { x: u32, y: u32 }
    /// let codec = Codec::default();
    /// let named = codec.encode(&Point { x: 1, y: 2 }, false).unwrap();
    /// let compact = codec.encode_compact(&Point { x: 1, y: 2 }, false).unwrap();
    /// assert!(compact.len() < named.len());
    /// assert_eq!(codec.decode::<Point>(&compact).unwrap(), codec.decode::<Point>(&named).unwrap());
    /// ```
    pub fn encode_compact<T: Serialize + ?Sized>(
        &self,
        value: &T,
        compress: bool,
    ) -> Result<Vec<u8>, CodecError> {
        self.encode_as(value, compress, false)
    }

    fn encode_as<T: Serialize + ?Sized>(
        &self,
        value: &T,
        compress: bool,
        named: bool,
    ) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(128);
        out.push(TAG_MSGPACK);
        let written = if named {
            rmp_serde::encode::write_named(&mut out, value)
        } else {
            rmp_serde::encode::write(&mut out, value)
        };
        written.map_err(|e| CodecError::Encode(e.to_string()))?;
        let body_len = out.len() - 1;
        if body_len > self.max_size {
            return Err(CodecError::TooLarge {
                size: body_len,
                max: self.max_size,
            });
        }
        if compress && body_len >= self.compression_threshold {
            let mut z = Vec::with_capacity(body_len / 2 + 16);
            z.push(TAG_ZSTD);
            let compressed = zstd::bulk::compress(&out[1..], self.level)
                .map_err(|e| CodecError::Encode(format!("zstd: {e}")))?;
            z.extend_from_slice(&compressed);
            if z.len() < out.len() {
                return Ok(z);
            }
        }
        Ok(out)
    }

    /// Decodes a payload written by [`Codec::encode`].
    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let (&tag, body) = bytes.split_first().ok_or(CodecError::Empty)?;
        match tag {
            TAG_MSGPACK => decode_body(body),
            TAG_ZSTD => {
                let plain = zstd::bulk::decompress(body, self.max_size).map_err(|e| {
                    CodecError::Decompress {
                        cap: self.max_size,
                        reason: e.to_string(),
                    }
                })?;
                decode_body(&plain)
            }
            other => Err(CodecError::UnknownFormat(other)),
        }
    }
}

fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    rmp_serde::from_slice(body).map_err(|e| CodecError::Malformed(e.to_string()))
}

/// Encodes a value as bare MessagePack (no tag, never compressed): the format of task
/// arguments and task outputs inside envelopes and results.
pub fn to_msgpack<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    rmp_serde::to_vec_named(value).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes bare MessagePack written by [`to_msgpack`].
pub fn from_msgpack<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_body(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_plain_and_compressed() {
        let codec = Codec {
            compression_threshold: 64,
            ..Codec::default()
        };
        let small = "hi".to_string();
        let big = "x".repeat(10_000);
        let a = codec.encode(&small, true).unwrap();
        let b = codec.encode(&big, true).unwrap();
        assert_eq!(a[0], TAG_MSGPACK);
        assert_eq!(b[0], TAG_ZSTD);
        assert!(b.len() < 200);
        assert_eq!(codec.decode::<String>(&a).unwrap(), small);
        assert_eq!(codec.decode::<String>(&b).unwrap(), big);
        let uncompressed = codec.encode(&big, false).unwrap();
        assert_eq!(uncompressed[0], TAG_MSGPACK);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let codec = Codec::default();
        assert!(matches!(
            codec.decode::<String>(&[]),
            Err(CodecError::Empty)
        ));
        assert!(matches!(
            codec.decode::<String>(b"\x00\x01"),
            Err(CodecError::UnknownFormat(0))
        ));
        assert!(matches!(
            codec.decode::<String>(b"M\xc1\xc1"),
            Err(CodecError::Malformed(_))
        ));
        assert!(matches!(
            codec.decode::<String>(b"Znot zstd"),
            Err(CodecError::Decompress { .. })
        ));
        // every truncation of a valid payload fails cleanly
        let good = codec
            .encode(&("task", 42u64, vec![1.5f64; 8]), false)
            .unwrap();
        for cut in 0..good.len() {
            let _ = codec.decode::<(String, u64, Vec<f64>)>(&good[..cut]);
        }
    }

    #[test]
    fn decompression_bomb_is_capped() {
        let big = vec![0u8; 1 << 20];
        let writer = Codec {
            compression_threshold: 1,
            ..Codec::default()
        };
        let bytes = writer.encode(&serde_bytes::Bytes::new(&big), true).unwrap();
        assert_eq!(bytes[0], TAG_ZSTD);
        let reader = Codec {
            max_size: 4096,
            ..Codec::default()
        };
        let err = reader.decode::<serde_bytes::ByteBuf>(&bytes).unwrap_err();
        assert!(
            matches!(err, CodecError::Decompress { cap: 4096, .. }),
            "{err}"
        );
    }

    #[test]
    fn oversized_payload_is_refused() {
        let codec = Codec {
            max_size: 100,
            ..Codec::default()
        };
        let err = codec.encode(&"y".repeat(1000), true).unwrap_err();
        assert!(matches!(err, CodecError::TooLarge { max: 100, .. }));
    }
}
