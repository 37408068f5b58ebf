//! A pkiMessage through both readers (direct DER, and OpenSSL's PKCS#7): neither panics,
//! and when both read it they agree on signer, content, attributes and the signature's
//! verdict (`sigil::scep::readers_agree` is the oracle).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(disagreement) = sigil::scep::readers_agree(data) {
        panic!("the readers disagree: {disagreement}");
    }
});
