//! `diarysync::gateway::fuzzing::deliver(input)`: whole deliveries through the gateway and a
//! SQLite store; see that module for the input format and what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| diarysync::gateway::fuzzing::deliver(input));
