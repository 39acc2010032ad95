#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::group_merge::group_merge(data));
