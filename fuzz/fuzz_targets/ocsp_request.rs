//! The OCSP request reader (what relying parties send, unauthenticated).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sigil::pki::ocsp::parse_request(data);
});
