#![no_main]
//! Fuzz target `spdy_frames`: see `corral::fuzzing::spdy_frames` for the input and what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral::fuzzing::spdy_frames(data));
