//! The PKCS#10 reader (subject, SANs, challenge, key): read without panicking; what reads
//! re-reads the same.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(csr) = sigil::pki::parse_csr(data) {
        let again = sigil::pki::parse_csr(&csr.der).expect("a CSR that read reads again");
        assert_eq!(again.subject_der, csr.subject_der);
        assert_eq!(again.challenge, csr.challenge);
    }
});
