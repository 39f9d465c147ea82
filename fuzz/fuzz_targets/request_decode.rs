//! Any bytes as a request frame: decoding returns a request or a typed error, never
//! panics, and never allocates more than the frame could describe.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = herald_broker::internals::decode_request(bytes::Bytes::copy_from_slice(data));
});
