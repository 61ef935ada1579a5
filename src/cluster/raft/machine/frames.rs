//! How a snapshot is laid out in bytes: a sequence of pieces, each a codec record behind its
//! length (4 bytes big-endian), so a snapshot of any size decodes within the codec's limit on
//! one record; stored with its meta framed the same way in front.

use openraft::AnyError;
use serde::Serialize;

use super::{any, Piece};
use crate::cluster::raft::types::SnapshotMeta;
use crate::codec;

/// Appends `value`'s codec record to `out`, behind its length (4 bytes big-endian).
pub(super) fn push_framed(out: &mut Vec<u8>, value: &impl Serialize) -> Result<(), AnyError> {
    let bytes = codec::encode(value).map_err(any)?;
    let len = u32::try_from(bytes.len()).map_err(any)?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&bytes);
    Ok(())
}

/// A length (4 bytes big-endian) and that many bytes from the front of `bytes`, and the rest.
fn split_framed(bytes: &[u8]) -> Result<(&[u8], &[u8]), AnyError> {
    let (len, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or_else(|| AnyError::error("a snapshot frame is cut short"))?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(AnyError::error("a snapshot frame is cut short"));
    }
    Ok(rest.split_at(len))
}

pub(super) fn split_pieces(mut data: &[u8]) -> Result<Vec<Piece>, AnyError> {
    let mut pieces = Vec::new();
    while !data.is_empty() {
        let (piece, rest) = split_framed(data)?;
        pieces.push(codec::decode(piece).map_err(any)?);
        data = rest;
    }
    Ok(pieces)
}

/// The stored form of a snapshot: its meta framed like a piece, then its data.
pub(super) fn snapshot_record(meta: &SnapshotMeta, data: &[u8]) -> Result<Vec<u8>, AnyError> {
    let mut record = Vec::with_capacity(data.len() + 256);
    push_framed(&mut record, meta)?;
    record.extend_from_slice(data);
    Ok(record)
}

pub(super) fn split_record(record: &[u8]) -> Result<(SnapshotMeta, &[u8]), AnyError> {
    let (meta, data) = split_framed(record)?;
    Ok((codec::decode(meta).map_err(any)?, data))
}
