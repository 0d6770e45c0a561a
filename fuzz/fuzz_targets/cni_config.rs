#![no_main]
//! Fuzz target `cni_config`: see `corral::fuzzing::cni_config` for the input and what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral::fuzzing::cni_config(data));
