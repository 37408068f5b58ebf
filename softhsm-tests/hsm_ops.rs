//! The `hsm` module against a real token: key generation and protection attributes, signatures
//! checked by OpenSSL, decryption of what OpenSSL encrypted, recovery after the module closes
//! every session, and many concurrent operations from tokio tasks.

use std::time::Duration;

use cryptoki::context::Pkcs11;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Public};
use openssl::rsa::Padding;
use openssl::sign::{RsaPssSaltlen, Verifier};
use sigil::hsm::{DecryptAlg, Hsm, HsmError, KeySpec, KeyUsage, SignAlg};

use crate::common::{shared_hsm, MODULE};

const SIGN_AND_DECRYPT: KeyUsage = KeyUsage {
    sign: true,
    decrypt: true,
};

fn generate(hsm: &Hsm, spec: KeySpec, label: &str) -> PKey<Public> {
    let _ = hsm.destroy_blocking(label);
    hsm.generate_blocking(spec, label, SIGN_AND_DECRYPT)
        .expect("generate")
        .to_openssl()
        .expect("public key")
}

/// Read a private key attribute with a second, raw cryptoki handle on the same module.
fn raw_private_attribute(label: &str, attr: AttributeType) -> Result<Vec<Attribute>, String> {
    // Never dropped: dropping a cryptoki context calls C_Finalize, which would finalise the
    // module under every other test of this process that uses it (SoftHSM is one instance
    // per process), a heap corruption seen once as a SIGABRT.
    let ctx = std::mem::ManuallyDrop::new(Pkcs11::new(MODULE).map_err(|e| e.to_string())?);
    let _ = ctx.initialize(cryptoki::context::CInitializeArgs::new(
        cryptoki::context::CInitializeFlags::OS_LOCKING_OK,
    ));
    let hsm = shared_hsm();
    let slot = ctx
        .get_slots_with_token()
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|s| s.id() == hsm.slot_id())
        .ok_or("slot")?;
    let session = ctx.open_ro_session(slot).map_err(|e| e.to_string())?;
    let keys = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(|e| e.to_string())?;
    let key = keys.first().ok_or("no key")?;
    session
        .get_attributes(*key, &[attr])
        .map_err(|e| e.to_string())
}

#[test]
fn generated_keys_are_sensitive_and_never_extractable() {
    let _slot = crate::common::shared_slot();
    let hsm = shared_hsm();
    for (spec, label) in [
        (KeySpec::Rsa(2048), "prot-rsa2048"),
        (KeySpec::Rsa(3072), "prot-rsa3072"),
        (KeySpec::EcP256, "prot-p256"),
        (KeySpec::EcP384, "prot-p384"),
    ] {
        generate(hsm, spec, label);
        let p = hsm.key_protection_blocking(&hsm.uri(label)).unwrap();
        assert!(p.sensitive, "{label}: CKA_SENSITIVE");
        assert!(!p.extractable, "{label}: CKA_EXTRACTABLE");
        assert!(p.never_extractable, "{label}: CKA_NEVER_EXTRACTABLE");
        assert!(p.always_sensitive, "{label}: CKA_ALWAYS_SENSITIVE");
        // Try to read the secret itself: the token must give nothing.
        let secret = match spec {
            KeySpec::Rsa(_) => AttributeType::PrivateExponent,
            _ => AttributeType::Value,
        };
        match raw_private_attribute(label, secret) {
            Err(_) => {}
            Ok(attrs) => {
                for a in attrs {
                    match a {
                        Attribute::PrivateExponent(v) | Attribute::Value(v) => {
                            assert!(v.is_empty(), "{label}: private key bytes were readable")
                        }
                        other => panic!("{label}: unexpected attribute {other:?}"),
                    }
                }
            }
        }
        assert_eq!(
            hsm.public_key_blocking(&hsm.uri(label)).unwrap().spec(),
            spec
        );
    }
}

#[test]
fn generating_over_an_existing_label_is_refused() {
    let _slot = crate::common::shared_slot();
    let hsm = shared_hsm();
    generate(hsm, KeySpec::EcP256, "dup-key");
    let err = hsm
        .generate_blocking(KeySpec::EcP256, "dup-key", SIGN_AND_DECRYPT)
        .unwrap_err();
    assert!(matches!(err, HsmError::AlreadyExists { .. }), "{err}");
}

fn verify(pkey: &PKey<Public>, alg: SignAlg, data: &[u8], sig: &[u8]) -> bool {
    let md = match alg {
        SignAlg::RsaPkcs1Sha256 | SignAlg::RsaPssSha256 | SignAlg::EcdsaSha256 => {
            MessageDigest::sha256()
        }
        SignAlg::RsaPkcs1Sha384 | SignAlg::RsaPssSha384 | SignAlg::EcdsaSha384 => {
            MessageDigest::sha384()
        }
        SignAlg::RsaPkcs1Sha512 | SignAlg::RsaPssSha512 => MessageDigest::sha512(),
        SignAlg::RsaPkcs1Sha1 => MessageDigest::sha1(),
    };
    let mut v = Verifier::new(md, pkey).unwrap();
    if matches!(
        alg,
        SignAlg::RsaPssSha256 | SignAlg::RsaPssSha384 | SignAlg::RsaPssSha512
    ) {
        v.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
        v.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH).unwrap();
        v.set_rsa_mgf1_md(md).unwrap();
    }
    v.update(data).unwrap();
    v.verify(sig).unwrap_or(false)
}

#[test]
fn signatures_verify_with_openssl() {
    let _slot = crate::common::shared_slot();
    let hsm = shared_hsm();
    let rsa = generate(hsm, KeySpec::Rsa(2048), "sig-rsa");
    let p256 = generate(hsm, KeySpec::EcP256, "sig-p256");
    let p384 = generate(hsm, KeySpec::EcP384, "sig-p384");
    let data = b"to be signed by the token";
    for (label, pkey, alg) in [
        ("sig-rsa", &rsa, SignAlg::RsaPkcs1Sha256),
        ("sig-rsa", &rsa, SignAlg::RsaPkcs1Sha384),
        ("sig-rsa", &rsa, SignAlg::RsaPkcs1Sha512),
        ("sig-rsa", &rsa, SignAlg::RsaPssSha256),
        ("sig-rsa", &rsa, SignAlg::RsaPssSha384),
        ("sig-rsa", &rsa, SignAlg::RsaPssSha512),
        ("sig-p256", &p256, SignAlg::EcdsaSha256),
        ("sig-p384", &p384, SignAlg::EcdsaSha384),
    ] {
        let sig = hsm.sign_blocking(&hsm.uri(label), alg, data).unwrap();
        assert!(
            verify(pkey, alg, data, &sig),
            "{label} {alg:?} did not verify"
        );
        assert!(
            !verify(pkey, alg, b"other data", &sig),
            "{label} {alg:?} verified the wrong data"
        );
    }
    // ECDSA with an RSA key is the token's refusal, reported, not a panic.
    assert!(hsm
        .sign_blocking(&hsm.uri("sig-rsa"), SignAlg::EcdsaSha256, data)
        .is_err());
}

#[test]
fn decrypts_what_openssl_encrypted_to_the_public_key() {
    let _slot = crate::common::shared_slot();
    let hsm = shared_hsm();
    let pkey = generate(hsm, KeySpec::Rsa(2048), "dec-rsa");
    let rsa = pkey.rsa().unwrap();
    let secret = b"a 16-byte AES key";
    for (alg, padding) in [
        (DecryptAlg::RsaPkcs1v15, Padding::PKCS1),
        (DecryptAlg::RsaOaepSha1, Padding::PKCS1_OAEP),
    ] {
        let mut ct = vec![0u8; rsa.size() as usize];
        let n = rsa.public_encrypt(secret, &mut ct, padding).unwrap();
        ct.truncate(n);
        let pt = hsm.decrypt_blocking(&hsm.uri("dec-rsa"), alg, &ct).unwrap();
        assert_eq!(pt, secret, "{alg:?}");
    }
    // A ciphertext that is not for this key is an error, not garbage or a panic.
    let garbage = vec![0x42u8; 256];
    assert!(hsm
        .decrypt_blocking(&hsm.uri("dec-rsa"), DecryptAlg::RsaOaepSha1, &garbage)
        .is_err());
    let short = vec![1u8; 3];
    assert!(hsm
        .decrypt_blocking(&hsm.uri("dec-rsa"), DecryptAlg::RsaPkcs1v15, &short)
        .is_err());
}

#[test]
fn missing_keys_are_named() {
    let _slot = crate::common::shared_slot();
    let hsm = shared_hsm();
    let err = hsm
        .sign_blocking(&hsm.uri("no-such-key"), SignAlg::EcdsaSha256, b"x")
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("no-such-key") && msg.contains("sigil init"),
        "{msg}"
    );
    let other_token = "pkcs11:token=elsewhere;object=k".parse().unwrap();
    assert!(matches!(
        hsm.sign_blocking(&other_token, SignAlg::EcdsaSha256, b"x"),
        Err(HsmError::BadUri { .. })
    ));
}

/// Close every session of the application through the module's own C_CloseAllSessions.
fn close_all_sessions_underneath(slot: u64) {
    // SAFETY: loading the module that is already loaded returns the same instance; the function
    // list and C_CloseAllSessions are the module's own. No pointers outlive this call.
    unsafe {
        let lib = cryptoki_sys::Pkcs11::new(MODULE).expect("load module");
        let mut list: *mut cryptoki_sys::CK_FUNCTION_LIST = std::ptr::null_mut();
        assert_eq!(lib.C_GetFunctionList(&mut list), cryptoki_sys::CKR_OK);
        let close = (*list).C_CloseAllSessions.expect("C_CloseAllSessions");
        assert_eq!(
            close(slot as cryptoki_sys::CK_SLOT_ID),
            cryptoki_sys::CKR_OK
        );
    }
}

#[test]
fn survives_all_sessions_being_closed_underneath() {
    let _alone = crate::common::shared_slot_alone();
    let hsm = shared_hsm();
    generate(hsm, KeySpec::EcP256, "recover-p256");
    let uri = hsm.uri("recover-p256");
    hsm.sign_blocking(&uri, SignAlg::EcdsaSha256, b"before")
        .unwrap();
    let recoveries = || {
        sigil::telemetry::render_metrics()
            .lines()
            .find(|l| l.starts_with("sigil_hsm_session_recoveries_total"))
            .and_then(|l| l.split_whitespace().last()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = recoveries();
    close_all_sessions_underneath(hsm.slot_id());
    // The next operations must work: the pool reopens, logs in again and retries.
    for _ in 0..8 {
        hsm.sign_blocking(&uri, SignAlg::EcdsaSha256, b"after")
            .unwrap();
    }
    assert!(recoveries() > before, "the pool did not record a recovery");
}

#[test]
fn many_concurrent_operations_from_tokio_tasks() {
    let _slot = crate::common::shared_slot();
    let hsm = shared_hsm().clone();
    generate(&hsm, KeySpec::EcP256, "conc-p256");
    let pkey = generate(&hsm, KeySpec::Rsa(2048), "conc-rsa");
    let rsa = pkey.rsa().unwrap();
    let mut ct = vec![0u8; rsa.size() as usize];
    let n = rsa.public_encrypt(b"k", &mut ct, Padding::PKCS1).unwrap();
    ct.truncate(n);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for i in 0..256 {
            let hsm = hsm.clone();
            let ct = ct.clone();
            tasks.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    hsm.sign(
                        &hsm.uri("conc-p256"),
                        SignAlg::EcdsaSha256,
                        vec![i as u8; 32],
                    )
                    .await
                    .map(|_| ())
                } else {
                    hsm.decrypt(&hsm.uri("conc-rsa"), DecryptAlg::RsaPkcs1v15, ct)
                        .await
                        .map(|pt| assert_eq!(pt, b"k"))
                }
            }));
        }
        // Meanwhile the runtime itself stays responsive.
        let tick = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::time::sleep(Duration::from_millis(1)),
        )
        .await;
        assert!(tick.is_ok());
        let all = tokio::time::timeout(Duration::from_secs(120), futures_join(tasks)).await;
        let results = all.expect("deadlock: operations did not finish");
        assert_eq!(results.len(), 256);
        for r in results {
            r.expect("task").expect("operation");
        }
    });
}

async fn futures_join<T>(
    handles: Vec<tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await);
    }
    out
}
