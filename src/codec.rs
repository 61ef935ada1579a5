//! The storage and wire codec: every byte agora writes to sled (and, later, sends between
//! nodes) is encoded here and nowhere else.
//!
//! Records are bincode 2.0.1 (pinned: upstream is unmaintained) behind a one-byte format
//! version, so replacing bincode means changing this file and bumping [`FORMAT_VERSION`].
//! Callers are the storage module and the actors that persist their state through it.
//!
//! Version 2 changed two layouts: an `Order` records the saga that placed it and a
//! reservation the saga that made it. Stored records of version 1 still read back: the storage tables decode through
//! [`decode_record`], which upgrades them (`legacy`). Every other layout is unchanged, so
//! [`decode`] reads both versions alike; nodes of one cluster run one build.

mod legacy;

use serde::{de::DeserializeOwned, Serialize};

/// The first byte of every encoded record.
pub const FORMAT_VERSION: u8 = 2;

/// The oldest format version still read.
const OLDEST_VERSION: u8 = 1;

/// Why a stored record could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("record is empty")]
    Empty,
    #[error("record has format version {0}, this build reads versions {OLDEST_VERSION} to {FORMAT_VERSION}")]
    UnknownVersion(u8),
    #[error("record does not decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("record has {0} trailing bytes")]
    Trailing(usize),
    #[error("value does not encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
}

/// The most a record may claim to hold while decoding. bincode preallocates what a length
/// prefix says, so without a limit one corrupt prefix asks for exabytes: a capacity-overflow
/// panic, or an allocation failure that aborts the whole process. Records are far smaller.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// The limit is checked only while decoding, so the bytes written are the same as without it.
fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_RECORD_BYTES>()
}

/// Encodes a value as `[FORMAT_VERSION, bincode bytes...]`.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![FORMAT_VERSION];
    bincode::serde::encode_into_std_write(value, &mut out, config())?;
    Ok(out)
}

/// Decodes what [`encode`] wrote (or a version 1 build did, for the layouts version 2 kept);
/// rejects unknown versions and trailing garbage.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (_, body) = split_version(bytes)?;
    decode_body(body)
}

/// A type agora stores in its tables. Its version 1 records decode through
/// [`Record::decode_v1`]: by default as the current layout, which most types kept.
pub trait Record: Serialize + DeserializeOwned {
    fn decode_v1(body: &[u8]) -> Result<Self, CodecError> {
        decode_body(body)
    }
}

/// Decodes a stored record of any version this build reads, upgrading an older one.
pub fn decode_record<T: Record>(bytes: &[u8]) -> Result<T, CodecError> {
    match split_version(bytes)? {
        (FORMAT_VERSION, body) => decode_body(body),
        (_, body) => T::decode_v1(body),
    }
}

fn split_version(bytes: &[u8]) -> Result<(u8, &[u8]), CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if !(OLDEST_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(CodecError::UnknownVersion(version));
    }
    Ok((version, body))
}

fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(body, config())?;
    if used != body.len() {
        return Err(CodecError::Trailing(body.len() - used));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let value = (String::from("sku"), 42u32, vec![1i64, -2]);
        let bytes = encode(&value).unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode::<(String, u32, Vec<i64>)>(&bytes).unwrap(), value);
        assert!(matches!(decode::<u32>(&[]), Err(CodecError::Empty)));
        assert!(matches!(
            decode::<u32>(&[9, 1]),
            Err(CodecError::UnknownVersion(9))
        ));
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            decode::<(String, u32, Vec<i64>)>(&long),
            Err(CodecError::Trailing(1))
        ));
    }

    #[test]
    fn a_corrupt_length_prefix_is_an_error_not_an_abort() {
        // Found by the `decode_record` fuzz target: a string whose length prefix says 2^64 - 3.
        let mut bytes = vec![FORMAT_VERSION];
        bytes.extend([0xfd; 40]);
        assert!(matches!(
            decode::<crate::domain::Product>(&bytes),
            Err(CodecError::Decode(_))
        ));
        assert!(decode::<String>(&[FORMAT_VERSION, 0xfc, 0, 0, 0, 0x40]).is_err());
    }

    proptest::proptest! {
        /// Garbage read back from disk is an error, never a panic (the cargo-fuzz target
        /// `decode_record` explores this far deeper).
        #[test]
        fn garbage_decodes_to_an_error_or_a_value(
            version in proptest::prop_oneof![proptest::strategy::Just(FORMAT_VERSION), proptest::num::u8::ANY],
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
        ) {
            let bytes: Vec<u8> = std::iter::once(version).chain(body).collect();
            let _ = decode::<crate::domain::Product>(&bytes);
            let _ = decode::<crate::domain::StockLevel>(&bytes);
            let _ = decode::<crate::domain::Order>(&bytes);
            let _ = decode::<crate::domain::OrderEvent>(&bytes);
        }
    }
}
