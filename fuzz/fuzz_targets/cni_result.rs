#![no_main]
//! Fuzz target `cni_result`: see `corral::fuzzing::cni_result` for the input and what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral::fuzzing::cni_result(data));
