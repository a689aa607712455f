//! See `tokengate_fuzz::bearer` (fuzz/src/lib.rs) for what this target feeds and asserts.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokengate_fuzz::bearer(data));
