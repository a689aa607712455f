//! See `tokengate_fuzz::validate` (fuzz/src/lib.rs) for what this target feeds and asserts.

#![no_main]

libfuzzer_sys::fuzz_target!(|token: &str| tokengate_fuzz::validate(token));
