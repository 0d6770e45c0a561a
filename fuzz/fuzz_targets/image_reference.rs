#![no_main]
//! Fuzz target `image_reference`: see `corral::fuzzing::image_reference` for the input and what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral::fuzzing::image_reference(data));
