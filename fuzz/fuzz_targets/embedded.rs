//! Fuzz target `embedded`: see `spool_fuzz::embedded`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spool_fuzz::embedded(data));
