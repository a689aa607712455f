//! See `tokengate_fuzz::normalize` (fuzz/src/lib.rs) for what this target feeds and asserts.

#![no_main]

libfuzzer_sys::fuzz_target!(|path: &str| tokengate_fuzz::normalize(path));
