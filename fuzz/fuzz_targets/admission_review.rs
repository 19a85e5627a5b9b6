//! An AdmissionReview body: parsed, validated as every kind Berth admits, and mutated.
//! The harness and its assertions are in `fuzz/src/lib.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    berth_fuzz::admission_review(data);
});
