//! An approval token, verified against the production example request.
//! The harness and its assertions are in `fuzz/src/lib.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    berth_fuzz::approval_token(data);
});
