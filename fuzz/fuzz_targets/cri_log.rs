#![no_main]
//! Fuzz target `cri_log`: see `corral::fuzzing::cri_log` for the input and what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral::fuzzing::cri_log(data));
