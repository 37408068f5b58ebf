//! The enveloped content of a pkiMessage (EnvelopedData): read without panicking.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sigil::scep::Envelope::parse(data);
});
