//! Building what the server sends: CertRep pkiMessages (SUCCESS, PENDING, FAILURE) signed by
//! the RA key, and degenerate certs-only SignedData (GetCACert, the SUCCESS payload).
//!
//! Signed attributes are a DER SET (sorted), with a fresh senderNonce and the recipientNonce
//! the client expects.

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{Any, ObjectIdentifier, OctetString, SetOfVec, UtcTime, Utf8StringRef};
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

fn cert_choices(certs: &[Vec<u8>]) -> Result<Option<CertificateSet>, ScepError> {
    if certs.is_empty() {
        return Ok(None);
    }
    let mut set = SetOfVec::new();
    for c in certs {
        let cert = x509_cert::Certificate::from_der(c).map_err(ScepError::encode)?;
        set.insert(CertificateChoices::Certificate(cert))
            .map_err(ScepError::encode)?;
    }
    Ok(Some(CertificateSet(set)))
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
        x509_cert::Certificate::from_der(c).map_err(ScepError::encode)?;
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
pub(super) fn signed_message(
    content: Vec<u8>,
    scep_attrs: Vec<Attribute>,
    digest: DigestAlg,
    signature_alg: ObjectIdentifier,
    certs: &[Vec<u8>],
    sign: &SignFn<'_>,
) -> Result<Vec<u8>, ScepError> {
    let mut attrs = SetOfVec::new();
    let mut add = |a| attrs.insert(a).map_err(ScepError::encode);
    add(attr(
        oid::CONTENT_TYPE,
        Any::encode_from(&oid::DATA).map_err(ScepError::encode)?,
    )?)?;
    add(attr(
        oid::MESSAGE_DIGEST,
        asn1::octets(&digest.digest(&content)?)?,
    )?)?;
    let now = UtcTime::from_system_time(std::time::SystemTime::now()).map_err(ScepError::encode)?;
    add(attr(
        oid::SIGNING_TIME,
        Any::encode_from(&now).map_err(ScepError::encode)?,
    )?)?;
    for a in scep_attrs {
        add(a)?;
    }
    let signed_attrs_der = attrs.to_der().map_err(ScepError::encode)?;
    let signature = sign(&signed_attrs_der)?;
    let signer_cert = certs
        .first()
        .ok_or_else(|| ScepError::Malformed("no signer certificate".into()))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(signer_cert)
        .map_err(|e| ScepError::Malformed(format!("signer certificate: {e}")))?;
    let sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
        issuer: x509_cert::name::Name::from_der(parsed.tbs_certificate.issuer.as_raw())
            .map_err(ScepError::encode)?,
        serial_number: x509_cert::serial_number::SerialNumber::new(
            parsed.tbs_certificate.raw_serial(),
        )
        .map_err(ScepError::encode)?,
    });
    let digest_alg = AlgorithmIdentifierOwned {
        oid: digest.oid(),
        parameters: Some(Any::null()),
    };
    let signer = SignerInfo {
        version: CmsVersion::V1,
        sid,
        digest_alg: digest_alg.clone(),
        signed_attrs: Some(attrs),
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: signature_alg,
            parameters: if signature_alg == oid::RSA_ENCRYPTION {
                Some(Any::null())
            } else {
                None
            },
        },
        signature: OctetString::new(signature).map_err(ScepError::encode)?,
        unsigned_attrs: None,
    };
    let mut signers = SetOfVec::new();
    signers.insert(signer).map_err(ScepError::encode)?;
    let mut digests = SetOfVec::new();
    digests.insert(digest_alg).map_err(ScepError::encode)?;
    let sd = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: digests,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: oid::DATA,
            // Always present (empty for PENDING and FAILURE): some clients treat a missing
            // eContent as detached content and fail to verify.
            econtent: Some(
                Any::encode_from(&OctetString::new(content).map_err(ScepError::encode)?)
                    .map_err(ScepError::encode)?,
            ),
        },
        certificates: cert_choices(certs)?,
        crls: None,
        signer_infos: SignerInfos(signers),
    };
    let ci = ContentInfo {
        content_type: oid::SIGNED_DATA,
        content: Any::encode_from(&sd).map_err(ScepError::encode)?,
    };
    ci.to_der().map_err(ScepError::encode)
}

/// transactionIDs are PrintableString; free text outside that alphabet goes as UTF8String.
pub(crate) fn printable_or_utf8(s: &str) -> Result<Any, ScepError> {
    printable(s).or_else(|_| {
        let u = Utf8StringRef::new(s).map_err(ScepError::encode)?;
        Any::encode_from(&u).map_err(ScepError::encode)
    })
}
