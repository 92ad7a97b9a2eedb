//! How raw bodies are kept: exactly the bytes received, LZ4-compressed when that is smaller.
//!
//! Every event's body is stored, so it is most of what the store writes: a 3.7 KB JSON order
//! compresses to about a third, which cuts the pages each commit flushes and the database's
//! size. Encoding runs in the request's task, not on the store's writer; decoding gives back
//! the very bytes the partner sent (the body's SHA-256 is of those).

use bytes::Bytes;

use super::StoreError;

/// The `body_encoding` of an LZ4 block prefixed with its decoded size.
pub const LZ4: &str = "lz4";

/// Bodies shorter than this are kept as they are: too little to gain.
const WORTH_COMPRESSING: usize = 256;
/// No stored body decodes to more than this; a larger claimed size means corruption.
const LARGEST_BODY: usize = 256 << 20;

/// A body as it will be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBody {
    pub bytes: Bytes,
    /// `None`: the bytes as received; `Some(LZ4)`: compressed.
    pub encoding: Option<&'static str>,
}

impl StoredBody {
    /// The stored form of `raw`: compressed when that saves at least a tenth.
    pub fn encode(raw: &Bytes) -> StoredBody {
        if raw.len() >= WORTH_COMPRESSING {
            let compressed = lz4_flex::block::compress_prepend_size(raw);
            if compressed.len() * 10 <= raw.len() * 9 {
                return StoredBody {
                    bytes: Bytes::from(compressed),
                    encoding: Some(LZ4),
                };
            }
        }
        StoredBody {
            bytes: raw.clone(),
            encoding: None,
        }
    }
}

/// The bytes a stored body was received as.
///
/// # Errors
/// [`StoreError::Corrupt`] for an unknown encoding or bytes that do not decode.
pub fn decode(stored: Vec<u8>, encoding: Option<&str>) -> Result<Vec<u8>, StoreError> {
    match encoding {
        None => Ok(stored),
        Some(LZ4) => {
            let size = stored
                .get(..4)
                .and_then(|prefix| prefix.try_into().ok())
                .map(u32::from_le_bytes)
                .and_then(|size| usize::try_from(size).ok())
                .ok_or_else(|| {
                    StoreError::Corrupt("a compressed body without its size".to_owned())
                })?;
            if size > LARGEST_BODY {
                return Err(StoreError::Corrupt(format!(
                    "a compressed body claims {size} bytes"
                )));
            }
            lz4_flex::block::decompress_size_prepended(&stored)
                .map_err(|e| StoreError::Corrupt(format!("a compressed body: {e}")))
        }
        Some(other) => Err(StoreError::Corrupt(format!("body encoding {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_order_is_compressed_and_decodes_to_the_same_bytes() {
        let raw = Bytes::from(
            std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/lightspeed/open_split_check_original.json"
            ))
            .expect("fixture"),
        );
        let stored = StoredBody::encode(&raw);
        assert_eq!(stored.encoding, Some(LZ4));
        assert!(
            stored.bytes.len() * 2 < raw.len(),
            "{} bytes stored for {}",
            stored.bytes.len(),
            raw.len()
        );
        let back = decode(stored.bytes.to_vec(), stored.encoding).expect("decodes");
        assert_eq!(back, raw.to_vec());
    }

    #[test]
    fn short_or_incompressible_bodies_are_kept_as_received() {
        let short = Bytes::from_static(b"{\"a\": 1}");
        assert_eq!(StoredBody::encode(&short).encoding, None);
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[3]
            })
            .collect();
        let stored = StoredBody::encode(&Bytes::from(noise.clone()));
        assert_eq!(stored.encoding, None);
        assert_eq!(stored.bytes.to_vec(), noise);
    }

    proptest::proptest! {
        #[test]
        fn every_body_decodes_to_the_exact_bytes_received(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..8192),
            repeat in 1usize..4,
        ) {
            let raw = Bytes::from(raw.repeat(repeat));
            let stored = StoredBody::encode(&raw);
            let back = decode(stored.bytes.to_vec(), stored.encoding).expect("decodes");
            proptest::prop_assert_eq!(back, raw.to_vec());
        }

        #[test]
        fn any_stored_bytes_decode_or_fail_without_panicking(
            stored in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        ) {
            let _ = decode(stored, Some(LZ4));
        }
    }

    #[test]
    fn a_corrupt_or_oversized_stored_body_is_an_error_not_a_panic() {
        assert!(decode(vec![1, 2], Some(LZ4)).is_err());
        assert!(decode(vec![0xff, 0xff, 0xff, 0x7f, 0], Some(LZ4)).is_err());
        assert!(decode(vec![10, 0, 0, 0, 0xff, 0xff], Some(LZ4)).is_err());
        assert!(decode(vec![1], Some("zip")).is_err());
    }
}
