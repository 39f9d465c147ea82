//! Kafka's compression codecs by their attribute number (1 gzip, 2 snappy, 3 lz4, 4 zstd),
//! through kafka-protocol's implementations (whose decompression stops at 64 MiB): what
//! the cleaner and the legacy message sets need to open and close record sections.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};

/// `bytes` decompressed with `codec`.
pub(crate) fn decompress(codec: i16, mut bytes: Bytes) -> Result<Bytes, String> {
    let whole = |b: &mut Bytes| Ok(b.clone());
    let result = match codec {
        1 => Gzip::decompress(&mut bytes, whole),
        2 => Snappy::decompress(&mut bytes, whole),
        3 => Lz4::decompress(&mut bytes, whole),
        4 => Zstd::decompress(&mut bytes, whole),
        other => return Err(format!("unknown compression codec {other}")),
    };
    result.map_err(|e| format!("decompressing: {e}"))
}

/// `bytes` compressed with `codec`.
pub(crate) fn compress(codec: i16, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = BytesMut::new();
    let fill = |b: &mut BytesMut| {
        b.put_slice(bytes);
        Ok(())
    };
    let result = match codec {
        1 => Gzip::compress(&mut out, fill),
        2 => Snappy::compress(&mut out, fill),
        3 => Lz4::compress(&mut out, fill),
        4 => Zstd::compress(&mut out, fill),
        other => return Err(format!("unknown compression codec {other}")),
    };
    result.map_err(|e| format!("compressing: {e}"))?;
    Ok(out.to_vec())
}
