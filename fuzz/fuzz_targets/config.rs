//! See `tokengate_fuzz::config` (fuzz/src/lib.rs) for what this target feeds and asserts.

#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| tokengate_fuzz::config(text));
