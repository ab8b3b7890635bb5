//! Fuzz target `record_batch`: see `spool_fuzz::record_batch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spool_fuzz::record_batch(data));
