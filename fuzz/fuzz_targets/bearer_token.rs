//! An `Authorization` header value, authenticated by the auth API's bearer verifier.
//! The harness and its assertions are in `fuzz/src/lib.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    berth_fuzz::bearer_token(data);
});
