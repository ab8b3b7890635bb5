//! Fuzz target `request`: see `spool_fuzz::request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spool_fuzz::request(data));
