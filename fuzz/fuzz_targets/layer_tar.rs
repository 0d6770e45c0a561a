#![no_main]
//! Fuzz target `layer_tar`: see `corral::fuzzing::layer_tar` for the input and what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral::fuzzing::layer_tar(data));
