//! Building what the server sends: CertRep pkiMessages (SUCCESS, PENDING, FAILURE) signed by
//! the RA key, and degenerate certs-only SignedData (GetCACert, the SUCCESS payload).
//!
//! Signed attributes are a DER SET (sorted), with a fresh senderNonce and the recipientNonce
//! the client expects.

use der::asn1::{Any, ObjectIdentifier, UtcTime, Utf8StringRef};
use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;

use super::asn1::{self, attr, oid, printable, ContentCipher, DigestAlg};
use super::envelope::seal;
use super::types::{FailInfo, MessageType, Nonce, PkiStatus, TransactionId};
use super::{RaKey, ScepError};

/// What a CertRep says.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Issued: the certificates (issued first, then any chain) and CRLs to return, encrypted
    /// to the requester.
    Success {
        /// DER certificates.
        certs: Vec<Vec<u8>>,
        /// DER CRLs (GetCRL).
        crls: Vec<Vec<u8>>,
    },
    /// Waiting for approval.
    Pending,
    /// Refused.
    Failure {
        /// failInfo.
        info: FailInfo,
        /// failInfoText: why, for the operator and the client's logs.
        text: String,
    },
}

/// Everything a CertRep needs besides the RA key.
#[derive(Debug, Clone)]
pub struct CertRep<'a> {
    /// Echoed transactionID.
    pub transaction_id: &'a TransactionId,
    /// The request's senderNonce, returned as recipientNonce.
    pub recipient_nonce: &'a Nonce,
    /// The answer.
    pub outcome: Outcome,
    /// The requester's certificate: the reply is encrypted to it.
    pub requester_cert: &'a [u8],
    /// Content cipher for the reply.
    pub cipher: ContentCipher,
    /// Digest for the RA's signature.
    pub digest: DigestAlg,
    /// The RA signing certificate (DER).
    pub ra_cert: &'a [u8],
    /// More certificates for the outer SignedData (e.g. the CA), after the RA certificate.
    pub extra_certs: &'a [Vec<u8>],
}

/// DER TLV with a definite length.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A degenerate certs-only SignedData (no signers), as DER ContentInfo.
///
/// The certificates keep the order given (the issued certificate first): DER would sort the
/// SET, but clients such as micromdm's scepclient take the first certificate as theirs, and
/// OpenSSL and Go keep insertion order too.
pub fn degenerate(certs: &[Vec<u8>], crls: &[Vec<u8>]) -> Result<Vec<u8>, ScepError> {
    for c in certs {
        whole_sequence(c)?;
    }
    for c in crls {
        x509_parser::parse_x509_crl(c).map_err(ScepError::encode)?;
    }
    let mut sd = Vec::new();
    sd.extend(tlv(0x02, &[1])); // version 1
    sd.extend(tlv(0x31, &[])); // digestAlgorithms: empty SET
    sd.extend(tlv(0x30, &oid::DATA.to_der().map_err(ScepError::encode)?)); // encapContentInfo
    if !certs.is_empty() {
        sd.extend(tlv(0xa0, &certs.concat())); // [0] IMPLICIT CertificateSet
    }
    if !crls.is_empty() {
        sd.extend(tlv(0xa1, &crls.concat())); // [1] IMPLICIT RevocationInfoChoices
    }
    sd.extend(tlv(0x31, &[])); // signerInfos: empty SET
    let mut ci = oid::SIGNED_DATA.to_der().map_err(ScepError::encode)?;
    ci.extend(tlv(0xa0, &tlv(0x30, &sd)));
    Ok(tlv(0x30, &ci))
}

impl CertRep<'_> {
    /// Encode and sign on the token (through `key`). Blocking when `key` is.
    pub fn build(&self, key: &dyn RaKey) -> Result<Vec<u8>, ScepError> {
        let (status, content) = match &self.outcome {
            Outcome::Success { certs, crls } => {
                let inner = degenerate(certs, crls)?;
                (
                    PkiStatus::Success,
                    seal(&inner, self.requester_cert, self.cipher)?,
                )
            }
            Outcome::Pending => (PkiStatus::Pending, Vec::new()),
            Outcome::Failure { .. } => (PkiStatus::Failure, Vec::new()),
        };
        let mut scep_attrs = vec![
            attr(
                oid::MESSAGE_TYPE,
                printable(&MessageType::CertRep.number().to_string())?,
            )?,
            attr(oid::PKI_STATUS, printable(status.text())?)?,
            attr(
                oid::TRANSACTION_ID,
                printable_or_utf8(&self.transaction_id.0)?,
            )?,
            attr(oid::SENDER_NONCE, asn1::octets(&Nonce::random()?.0)?)?,
        ];
        if !self.recipient_nonce.0.is_empty() {
            scep_attrs.push(attr(
                oid::RECIPIENT_NONCE,
                asn1::octets(&self.recipient_nonce.0)?,
            )?);
        }
        if let Outcome::Failure { info, text } = &self.outcome {
            scep_attrs.push(attr(oid::FAIL_INFO, printable(info.text())?)?);
            let t = Utf8StringRef::new(text).map_err(ScepError::encode)?;
            scep_attrs.push(attr(
                oid::FAIL_INFO_TEXT,
                Any::encode_from(&t).map_err(ScepError::encode)?,
            )?);
        }
        let mut certs = vec![self.ra_cert.to_vec()];
        certs.extend(self.extra_certs.iter().cloned());
        signed_message(
            content,
            scep_attrs,
            self.digest,
            oid::RSA_ENCRYPTION,
            &certs,
            &|data| key.sign(self.digest, data),
        )
    }
}

/// The GetNextCACert answer (RFC 8894 §4.7): a SignedData signed by the current RA key. The
/// next CA's certificates are in its certificate set (where jscep, PyScep and EJBCA's clients
/// read them, next to the signer's) and, as a certs-only SignedData, in its content.
pub fn next_ca_response(
    next_certs: &[Vec<u8>],
    ra_cert: &[u8],
    key: &dyn RaKey,
) -> Result<Vec<u8>, ScepError> {
    let inner = degenerate(next_certs, &[])?;
    let mut certs = vec![ra_cert.to_vec()];
    certs.extend(next_certs.iter().cloned());
    signed_message(
        inner,
        Vec::new(),
        DigestAlg::Sha256,
        oid::RSA_ENCRYPTION,
        &certs,
        &|data| key.sign(DigestAlg::Sha256, data),
    )
}

/// A SignedData with `content` inside (id-data), signed with RSASSA-PKCS1-v1_5 and SHA-256
/// by `certs[0]`'s key through `sign`, carrying `certs`: a signed configuration profile.
pub fn signed_content(
    content: Vec<u8>,
    certs: &[Vec<u8>],
    sign: &SignFn<'_>,
) -> Result<Vec<u8>, ScepError> {
    signed_message(
        content,
        Vec::new(),
        DigestAlg::Sha256,
        oid::RSA_ENCRYPTION,
        certs,
        sign,
    )
}

/// Signs the DER signed attributes.
pub type SignFn<'a> = dyn Fn(&[u8]) -> Result<Vec<u8>, ScepError> + 'a;

/// A SignedData pkiMessage around `content` with the SCEP attributes
/// given, contentType, messageDigest and signingTime added, signed by `certs[0]`'s key through
/// `sign` (which gets the DER SET of signed attributes).
///
/// Encoded by hand from DER pieces, each encoded once: the typed `cms` structures would parse
/// every certificate to put it back, and sort the SETs by encoding each element again for
/// every comparison (a third of a CertRep's cost without the token). The output is the same
/// canonical DER (the tests decode it with `cms` and re-encode it byte for byte, the
/// certificate set put in X.690's octet order, which `cms` does not keep).
pub(super) fn signed_message(
    content: Vec<u8>,
    scep_attrs: Vec<Attribute>,
    digest: DigestAlg,
    signature_alg: ObjectIdentifier,
    certs: &[Vec<u8>],
    sign: &SignFn<'_>,
) -> Result<Vec<u8>, ScepError> {
    let now = UtcTime::from_system_time(std::time::SystemTime::now()).map_err(ScepError::encode)?;
    let mut attrs = vec![
        attr(
            oid::CONTENT_TYPE,
            Any::encode_from(&oid::DATA).map_err(ScepError::encode)?,
        )?,
        attr(
            oid::MESSAGE_DIGEST,
            asn1::octets(&digest.digest(&content)?)?,
        )?,
        attr(
            oid::SIGNING_TIME,
            Any::encode_from(&now).map_err(ScepError::encode)?,
        )?,
    ];
    attrs.extend(scep_attrs);
    let attrs = set_of(
        attrs
            .iter()
            .map(|a| a.to_der().map_err(ScepError::encode))
            .collect::<Result<_, _>>()?,
    );
    let signature = sign(&tlv(0x31, &attrs))?;
    let signer_cert = certs
        .first()
        .ok_or_else(|| ScepError::Malformed("no signer certificate".into()))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(signer_cert).map_err(|e| {
        ScepError::Malformed(crate::reason::Reason::context("signer certificate", e))
    })?;
    let mut sid = parsed.tbs_certificate.issuer.as_raw().to_vec();
    sid.extend(tlv(0x02, parsed.tbs_certificate.raw_serial()));
    let digest_alg = AlgorithmIdentifierOwned {
        oid: digest.oid(),
        parameters: Some(Any::null()),
    }
    .to_der()
    .map_err(ScepError::encode)?;
    let signature_alg = AlgorithmIdentifierOwned {
        oid: signature_alg,
        parameters: (signature_alg == oid::RSA_ENCRYPTION).then(Any::null),
    }
    .to_der()
    .map_err(ScepError::encode)?;
    let mut signer = tlv(0x02, &[1]); // version 1
    signer.extend(tlv(0x30, &sid)); // issuerAndSerialNumber
    signer.extend_from_slice(&digest_alg);
    signer.extend(tlv(0xa0, &attrs)); // [0] IMPLICIT signedAttrs
    signer.extend(signature_alg);
    signer.extend(tlv(0x04, &signature));
    let mut encap = oid::DATA.to_der().map_err(ScepError::encode)?;
    // Always present (empty for PENDING and FAILURE): some clients treat a missing eContent as
    // detached content and fail to verify.
    encap.extend(tlv(0xa0, &tlv(0x04, &content)));
    let mut sd = tlv(0x02, &[1]); // version 1
    sd.extend(tlv(0x31, &digest_alg)); // digestAlgorithms
    sd.extend(tlv(0x30, &encap)); // encapContentInfo
    if !certs.is_empty() {
        for c in certs {
            whole_sequence(c)?;
        }
        sd.extend(tlv(0xa0, &set_of(certs.to_vec()))); // [0] IMPLICIT CertificateSet
    }
    sd.extend(tlv(0x31, &tlv(0x30, &signer))); // signerInfos
    let mut ci = oid::SIGNED_DATA.to_der().map_err(ScepError::encode)?;
    ci.extend(tlv(0xa0, &tlv(0x30, &sd)));
    Ok(tlv(0x30, &ci))
}

/// The contents of a DER SET OF these encodings: sorted as octet strings (X.690 §11.6).
fn set_of(mut encodings: Vec<Vec<u8>>) -> Vec<u8> {
    encodings.sort_unstable();
    encodings.concat()
}

/// `der` is one whole DER SEQUENCE (a certificate, before it goes into a certificate set).
fn whole_sequence(der: &[u8]) -> Result<(), ScepError> {
    let any = der::asn1::AnyRef::from_der(der).map_err(ScepError::encode)?;
    if der::Tagged::tag(&any) != der::Tag::Sequence {
        return Err(ScepError::Malformed(
            "a certificate to send is not a DER SEQUENCE".into(),
        ));
    }
    Ok(())
}

/// transactionIDs are PrintableString; free text outside that alphabet goes as UTF8String.
pub(crate) fn printable_or_utf8(s: &str) -> Result<Any, ScepError> {
    printable(s).or_else(|_| {
        let u = Utf8StringRef::new(s).map_err(ScepError::encode)?;
        Any::encode_from(&u).map_err(ScepError::encode)
    })
}
