#![no_main]
//! Fuzz target `image_manifest`: see `corral::fuzzing::image_manifest` for the input and what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral::fuzzing::image_manifest(data));
