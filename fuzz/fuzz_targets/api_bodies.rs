#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::api_bodies::api_bodies(data));
