//! The configuration reader: any text gets a configuration or an error naming the problem.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sigil::config::Config::parse_with_env(text, "fuzz", std::iter::empty());
    }
});
