//! A consumed message's headers as bytes, read from librdkafka's parsed header list.
//!
//! rdkafka's `Headers` accessors turn every header name into `&str` with an `unwrap`, and
//! the Kafka wire format allows any bytes there, so one record from any producer with a
//! name that is not UTF-8 would panic whoever reads its headers (the consumer runtime, the
//! CLI). This module is the workspace's only `unsafe` code: two librdkafka calls whose
//! results live as long as the message they came from.

#![allow(unsafe_code)]

use std::ffi::CStr;

use rdkafka::bindings as rdsys;
use rdkafka::message::BorrowedMessage;

/// The headers of `message` in order, names and values as bytes (`None` for a null
/// value). Never panics, whatever the bytes.
pub fn raw_headers<'a>(message: &'a BorrowedMessage<'_>) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
    let mut list: *mut rdsys::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: `message.ptr()` is the live librdkafka message behind `message`. librdkafka
    // parses its headers on first access into a list the message owns (as rdkafka's own
    // `headers()` does through `&self`), and frees it only when the message is destroyed,
    // which cannot happen while `message` is borrowed for 'a.
    let found = unsafe { rdsys::rd_kafka_message_headers(message.ptr(), &mut list) };
    let count = if found == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && !list.is_null() {
        // SAFETY: `list` is the non-null list returned above, alive for 'a.
        unsafe { rdsys::rd_kafka_header_cnt(list) }
    } else {
        0 // no headers (librdkafka says NOENT) or none it could parse
    };
    (0..count).filter_map(move |index| {
        let mut name: *const std::ffi::c_char = std::ptr::null();
        let mut value: *const std::ffi::c_void = std::ptr::null();
        let mut size: usize = 0;
        // SAFETY: `list` is alive for 'a (see above) and `index < count`; librdkafka
        // writes pointers into the list's own storage.
        let read = unsafe { rdsys::rd_kafka_header_get_all(list, index, &mut name, &mut value, &mut size) };
        if read != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            return None;
        }
        // SAFETY: librdkafka stores each name NUL-terminated, and each non-null value as
        // `size` bytes, in storage owned by the list, alive for 'a.
        let name: &'a [u8] = unsafe { CStr::from_ptr(name) }.to_bytes();
        let value: Option<&'a [u8]> =
            (!value.is_null()).then(|| unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) });
        Some((name, value))
    })
}
