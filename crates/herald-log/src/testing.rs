//! Helpers for tests and benchmarks: hand-built uncompressed RecordBatch v2 bytes.
//! Not part of the stable API.

/// Builds one uncompressed batch of `records` records, each with a `value_bytes`-byte
/// value (filled from the record index) and no key, timestamps `first_timestamp + i`,
/// base offset 0. The CRC is valid.
pub fn batch_bytes(records: u32, value_bytes: usize, first_timestamp: i64) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..records).map(|i| vec![(i % 251) as u8; value_bytes]).collect();
    batch_with_values(&values, first_timestamp)
}

/// Builds one uncompressed batch holding `values` (no keys), timestamps
/// `first_timestamp + i`, base offset 0.
pub fn batch_with_values(values: &[Vec<u8>], first_timestamp: i64) -> Vec<u8> {
    assert!(!values.is_empty(), "a batch holds at least one record");
    let mut records = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let mut body = Vec::new();
        body.push(0u8); // attributes
        put_varint(&mut body, i as i64); // timestamp delta
        put_varint(&mut body, i as i64); // offset delta
        put_varint(&mut body, -1); // key length: null
        put_varint(&mut body, value.len() as i64);
        body.extend_from_slice(value);
        put_varint(&mut body, 0); // headers
        put_varint(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    let count = values.len() as i32;
    let mut batch = Vec::with_capacity(61 + records.len());
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
    batch.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes()); // batch length
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&[0; 4]); // crc, filled below
    batch.extend_from_slice(&0i16.to_be_bytes()); // attributes
    batch.extend_from_slice(&(count - 1).to_be_bytes()); // last offset delta
    batch.extend_from_slice(&first_timestamp.to_be_bytes());
    batch.extend_from_slice(&(first_timestamp + i64::from(count) - 1).to_be_bytes());
    batch.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    batch.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    batch.extend_from_slice(&count.to_be_bytes());
    batch.extend_from_slice(&records);
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}
