#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    offramp::slack::fuzz::command(data);
});
