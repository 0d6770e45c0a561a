#![no_main]
//! Fuzz target `image_config`: see `corral::fuzzing::image_config` for the input and what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral::fuzzing::image_config(data));
