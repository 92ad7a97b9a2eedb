//! `diarysync::partners::fuzzing::run("lightspeed-kseries", input)`: see that module for the input format.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| diarysync::partners::fuzzing::run("lightspeed-kseries", input));
