//! OCSP (RFC 6960) as bytes: read an `OCSPRequest`, build the `ResponseData` to be signed, and
//! wrap a signature into an `OCSPResponse`. No I/O and no key: the caller looks statuses up and
//! has the token sign.
//!
//! The ASN.1 types are declared here with `der`'s derive over `x509-cert` 0.3 types. (RustCrypto's
//! `x509-ocsp` 0.2 is built on `der` 0.7 and `x509-cert` 0.2; when a release on `der` 0.8
//! lands, these declarations should give way to it.)

use der::asn1::{BitString, GeneralizedTime, Null, ObjectIdentifier, OctetString};
use der::{Any, Choice, Decode, Encode, Enumerated, Sequence};
use sha1::Digest as _;
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::CrlReason;
use x509_cert::ext::{Extension, Extensions};
use x509_cert::serial_number::SerialNumber;

/// id-pkix-ocsp-nonce.
pub const NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");
/// id-pkix-ocsp-basic.
const BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
/// SHA-1, as a CertID's hash algorithm.
pub const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");

/// Largest OCSP request read.
pub const MAX_REQUEST: usize = 16 * 1024;

/// `CertID`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct CertId {
    /// Hash algorithm of the two hashes.
    pub hash_algorithm: AlgorithmIdentifierOwned,
    /// Hash of the issuer's name (DER).
    pub issuer_name_hash: OctetString,
    /// Hash of the issuer's public key (the BIT STRING's contents).
    pub issuer_key_hash: OctetString,
    /// The certificate's serial.
    pub serial_number: SerialNumber,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct Request {
    req_cert: CertId,
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    single_request_extensions: Option<Extensions>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct TbsRequest {
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    version: Option<u8>,
    #[asn1(context_specific = "1", optional = "true", tag_mode = "EXPLICIT")]
    requestor_name: Option<Any>,
    request_list: Vec<Request>,
    #[asn1(context_specific = "2", optional = "true", tag_mode = "EXPLICIT")]
    request_extensions: Option<Extensions>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct OcspRequest {
    tbs_request: TbsRequest,
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    optional_signature: Option<Any>,
}

/// `RevokedInfo`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct RevokedInfo {
    revocation_time: GeneralizedTime,
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    revocation_reason: Option<CrlReason>,
}

#[derive(Clone, Debug, Eq, PartialEq, Choice)]
enum CertStatusAsn1 {
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
    Good(Null),
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", constructed = "true")]
    Revoked(RevokedInfo),
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT")]
    Unknown(Null),
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct SingleResponse {
    cert_id: CertId,
    cert_status: CertStatusAsn1,
    this_update: GeneralizedTime,
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    next_update: Option<GeneralizedTime>,
}

#[derive(Clone, Debug, Eq, PartialEq, Choice)]
enum ResponderId {
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", constructed = "true")]
    ByKey(OctetString),
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct ResponseData {
    responder_id: ResponderId,
    produced_at: GeneralizedTime,
    responses: Vec<SingleResponse>,
    #[asn1(context_specific = "1", optional = "true", tag_mode = "EXPLICIT")]
    response_extensions: Option<Extensions>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct BasicOcspResponse {
    tbs_response_data: Any,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    certs: Option<Vec<Any>>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct ResponseBytes {
    response_type: ObjectIdentifier,
    response: OctetString,
}

/// `OCSPResponseStatus`.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Enumerated)]
#[repr(u32)]
pub enum ResponseStatus {
    /// The answer follows.
    Successful = 0,
    /// The request does not parse.
    MalformedRequest = 1,
    /// The responder failed.
    InternalError = 2,
    /// Try again later (the store or the token is unavailable).
    TryLater = 3,
    /// A signed request is needed.
    SigRequired = 5,
    /// Not for this responder.
    Unauthorized = 6,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct OcspResponse {
    response_status: ResponseStatus,
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    response_bytes: Option<ResponseBytes>,
}

/// Why a request cannot be answered with statuses.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OcspError {
    /// Not an OCSPRequest.
    #[error("malformed OCSP request: {0}")]
    Malformed(#[source] crate::reason::Reason),
    /// Building the answer failed.
    #[error("OCSP response: {0}")]
    Build(#[source] crate::reason::Reason),
}

/// A parsed request: the certificates asked about and the nonce extension, if any.
#[derive(Debug, Clone)]
pub struct OcspQuery {
    /// The certificate IDs, in order.
    pub cert_ids: Vec<CertId>,
    /// The nonce extension as sent (echoed in the answer).
    pub nonce: Option<Extension>,
}

/// Read an OCSPRequest (DER).
pub fn parse_request(der: &[u8]) -> Result<OcspQuery, OcspError> {
    if der.len() > MAX_REQUEST {
        return Err(OcspError::Malformed(
            format!("{} bytes, more than {MAX_REQUEST}", der.len()).into(),
        ));
    }
    let req = OcspRequest::from_der(der)
        .map_err(|e| OcspError::Malformed(crate::reason::Reason::caused_by(e)))?;
    if req.tbs_request.request_list.is_empty() {
        return Err(OcspError::Malformed("no certificate asked about".into()));
    }
    if req.tbs_request.request_list.len() > 20 {
        return Err(OcspError::Malformed(
            "more than 20 certificates in one request".into(),
        ));
    }
    let nonce = req
        .tbs_request
        .request_extensions
        .as_ref()
        .and_then(|exts| exts.iter().find(|e| e.extn_id == NONCE).cloned());
    if let Some(n) = &nonce {
        // RFC 8954: 1 to 32 octets.
        if n.extn_value.as_bytes().len() > 34 {
            return Err(OcspError::Malformed("nonce longer than 32 octets".into()));
        }
    }
    Ok(OcspQuery {
        cert_ids: req
            .tbs_request
            .request_list
            .into_iter()
            .map(|r| r.req_cert)
            .collect(),
        nonce,
    })
}

/// The issuer a responder answers for: its name (DER) and public key (BIT STRING contents).
#[derive(Debug, Clone)]
pub struct IssuerHashes {
    sha1: (Vec<u8>, Vec<u8>),
    sha256: (Vec<u8>, Vec<u8>),
}

impl IssuerHashes {
    /// From the issuer's subject (DER) and public key bits.
    pub fn new(subject_der: &[u8], public_key_bits: &[u8]) -> IssuerHashes {
        IssuerHashes {
            sha1: (
                sha1::Sha1::digest(subject_der).to_vec(),
                sha1::Sha1::digest(public_key_bits).to_vec(),
            ),
            sha256: (
                sha2::Sha256::digest(subject_der).to_vec(),
                sha2::Sha256::digest(public_key_bits).to_vec(),
            ),
        }
    }

    /// The SHA-1 of the issuer's key: the responder ID "by key".
    pub fn key_id(&self) -> &[u8] {
        &self.sha1.1
    }

    /// The CertID RFC 5019 clients send for this issuer's certificate with serial
    /// `serial_hex` (the store's form): SHA-1, with NULL parameters, as OpenSSL writes it.
    /// Pre-produced answers carry this CertID, and answer only requests that carry it.
    pub fn sha1_cert_id(&self, serial_hex: &str) -> Result<CertId, OcspError> {
        let build = |e: der::Error| OcspError::Build(crate::reason::Reason::caused_by(e));
        let even = if serial_hex.len() % 2 == 1 {
            format!("0{serial_hex}")
        } else {
            serial_hex.to_string()
        };
        let serial =
            hex::decode(even).map_err(|e| OcspError::Build(crate::reason::Reason::caused_by(e)))?;
        Ok(CertId {
            hash_algorithm: AlgorithmIdentifierOwned {
                oid: SHA1,
                parameters: Some(Any::from(Null)),
            },
            issuer_name_hash: OctetString::new(self.sha1.0.clone()).map_err(build)?,
            issuer_key_hash: OctetString::new(self.sha1.1.clone()).map_err(build)?,
            serial_number: SerialNumber::new(&serial).map_err(build)?,
        })
    }

    /// Is this CertID about a certificate of this issuer?
    pub fn matches(&self, id: &CertId) -> bool {
        let (name, key) = match id.hash_algorithm.oid {
            SHA1 => &self.sha1,
            SHA256 => &self.sha256,
            _ => return false,
        };
        id.issuer_name_hash.as_bytes() == name.as_slice()
            && id.issuer_key_hash.as_bytes() == key.as_slice()
    }
}

/// The serial of a CertID as lower-case hex without leading zeros (the store's form).
pub fn serial_hex(id: &CertId) -> String {
    let bytes = id.serial_number.as_bytes();
    let lead = bytes.iter().take_while(|b| **b == 0).count();
    let h = hex::encode(&bytes[lead..]);
    if h.is_empty() {
        "0".into()
    } else {
        h
    }
}

/// What the responder says about one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Issued here and not revoked.
    Good,
    /// Revoked at (Unix seconds), with an RFC 5280 reason code.
    Revoked {
        /// When.
        at: i64,
        /// Reason code.
        reason: Option<i32>,
    },
    /// Not issued here (or not by this issuer).
    Unknown,
}

fn gtime(unix: i64) -> Result<GeneralizedTime, OcspError> {
    GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(unix.max(0) as u64))
        .map_err(|e| OcspError::Build(crate::reason::Reason::caused_by(e)))
}

fn reason(code: i32) -> Option<CrlReason> {
    Some(match code {
        1 => CrlReason::KeyCompromise,
        2 => CrlReason::CaCompromise,
        3 => CrlReason::AffiliationChanged,
        4 => CrlReason::Superseded,
        5 => CrlReason::CessationOfOperation,
        6 => CrlReason::CertificateHold,
        9 => CrlReason::PrivilegeWithdrawn,
        10 => CrlReason::AaCompromise,
        _ => return None,
    })
}

/// The `ResponseData` to sign (DER): one answer per CertID, valid from `now` to `next_update`,
/// the responder named by `key_id`, the nonce echoed.
pub fn response_data(
    key_id: &[u8],
    now: i64,
    next_update: i64,
    answers: &[(CertId, Status)],
    nonce: Option<&Extension>,
) -> Result<Vec<u8>, OcspError> {
    let build = |e: der::Error| OcspError::Build(crate::reason::Reason::caused_by(e));
    let responses = answers
        .iter()
        .map(|(id, status)| {
            Ok(SingleResponse {
                cert_id: id.clone(),
                cert_status: match status {
                    Status::Good => CertStatusAsn1::Good(Null),
                    Status::Unknown => CertStatusAsn1::Unknown(Null),
                    Status::Revoked { at, reason: r } => CertStatusAsn1::Revoked(RevokedInfo {
                        revocation_time: gtime(*at)?,
                        revocation_reason: r.and_then(reason),
                    }),
                },
                this_update: gtime(now)?,
                next_update: Some(gtime(next_update)?),
            })
        })
        .collect::<Result<Vec<_>, OcspError>>()?;
    ResponseData {
        responder_id: ResponderId::ByKey(OctetString::new(key_id).map_err(build)?),
        produced_at: gtime(now)?,
        responses,
        response_extensions: nonce.map(|n| vec![n.clone()]),
    }
    .to_der()
    .map_err(build)
}

/// A successful OCSPResponse around signed `ResponseData`: `signature_algorithm` is the
/// AlgorithmIdentifier (DER) of `signature`; `certs` (DER) go along when the signer is not the
/// issuer itself.
pub fn signed_response(
    response_data: &[u8],
    signature_algorithm: &[u8],
    signature: &[u8],
    certs: &[Vec<u8>],
) -> Result<Vec<u8>, OcspError> {
    let build = |e: der::Error| OcspError::Build(crate::reason::Reason::caused_by(e));
    let basic = BasicOcspResponse {
        tbs_response_data: Any::from_der(response_data).map_err(build)?,
        signature_algorithm: AlgorithmIdentifierOwned::from_der(signature_algorithm)
            .map_err(build)?,
        signature: BitString::from_bytes(signature).map_err(build)?,
        certs: if certs.is_empty() {
            None
        } else {
            Some(
                certs
                    .iter()
                    .map(|c| Any::from_der(c))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(build)?,
            )
        },
    }
    .to_der()
    .map_err(build)?;
    OcspResponse {
        response_status: ResponseStatus::Successful,
        response_bytes: Some(ResponseBytes {
            response_type: BASIC,
            response: OctetString::new(basic).map_err(build)?,
        }),
    }
    .to_der()
    .map_err(build)
}

/// How long a successful response may be kept by an HTTP cache (RFC 5019 §6.2), read from the
/// response itself: when it was produced and the earliest `nextUpdate` of its answers. None
/// for an error response, one that echoes a nonce (made for one request), an answer without
/// `nextUpdate`, or bytes that do not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Freshness {
    /// producedAt (Unix seconds).
    pub produced_at: i64,
    /// The earliest nextUpdate (Unix seconds).
    pub next_update: i64,
}

/// The [`Freshness`] of an OCSPResponse (DER).
pub fn freshness(der: &[u8]) -> Option<Freshness> {
    let unix = |t: &GeneralizedTime| i64::try_from(t.to_unix_duration().as_secs()).ok();
    let response = OcspResponse::from_der(der).ok()?;
    let bytes = response.response_bytes?;
    if response.response_status != ResponseStatus::Successful || bytes.response_type != BASIC {
        return None;
    }
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes()).ok()?;
    let data = ResponseData::from_der(&basic.tbs_response_data.to_der().ok()?).ok()?;
    if data
        .response_extensions
        .iter()
        .flatten()
        .any(|e| e.extn_id == NONCE)
    {
        return None;
    }
    let mut next_update: Option<i64> = None;
    for r in &data.responses {
        let n = unix(r.next_update.as_ref()?)?;
        next_update = Some(next_update.map_or(n, |m| m.min(n)));
    }
    Some(Freshness {
        produced_at: unix(&data.produced_at)?,
        next_update: next_update?,
    })
}

/// An unsuccessful OCSPResponse (no signature, as RFC 6960 §2.3 has it).
pub fn error_response(status: ResponseStatus) -> Vec<u8> {
    // Three fixed bytes: SEQUENCE { ENUMERATED status }.
    vec![0x30, 0x03, 0x0a, 0x01, status as u8]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An OCSP request made by `openssl ocsp -issuer ca.pem -serial 0x1234 -reqout` (SHA-1
    /// CertID, with a nonce), rebuilt here field by field.
    fn request(nonce: bool) -> Vec<u8> {
        let id = CertId {
            hash_algorithm: AlgorithmIdentifierOwned {
                oid: SHA1,
                parameters: Some(Any::from(Null)),
            },
            issuer_name_hash: OctetString::new(vec![1u8; 20]).unwrap(),
            issuer_key_hash: OctetString::new(vec![2u8; 20]).unwrap(),
            serial_number: SerialNumber::new(&[0x12, 0x34]).unwrap(),
        };
        OcspRequest {
            tbs_request: TbsRequest {
                version: None,
                requestor_name: None,
                request_list: vec![Request {
                    req_cert: id,
                    single_request_extensions: None,
                }],
                request_extensions: nonce.then(|| {
                    vec![Extension {
                        extn_id: NONCE,
                        critical: false,
                        extn_value: OctetString::new(vec![0x04, 0x02, 0xab, 0xcd]).unwrap(),
                    }]
                }),
            },
            optional_signature: None,
        }
        .to_der()
        .unwrap()
    }

    #[test]
    fn a_response_says_how_long_it_may_be_cached_unless_it_echoes_a_nonce() {
        let id = parse_request(&request(false)).unwrap().cert_ids.remove(0);
        let alg = AlgorithmIdentifierOwned {
            oid: SHA256,
            parameters: None,
        }
        .to_der()
        .unwrap();
        let response = |nonce: Option<&Extension>, answers: &[(CertId, Status)]| {
            let data = response_data(b"key", 1_800_000_000, 1_800_003_600, answers, nonce).unwrap();
            signed_response(&data, &alg, &[0x55; 8], &[]).unwrap()
        };
        let good = [(id.clone(), Status::Good)];
        assert_eq!(
            freshness(&response(None, &good)),
            Some(Freshness {
                produced_at: 1_800_000_000,
                next_update: 1_800_003_600,
            })
        );
        let nonce = parse_request(&request(true)).unwrap().nonce.unwrap();
        assert_eq!(freshness(&response(Some(&nonce), &good)), None);
        assert_eq!(freshness(&error_response(ResponseStatus::TryLater)), None);
        assert_eq!(freshness(b"not a response"), None);
        let full = response(None, &good);
        assert_eq!(freshness(&full[..full.len() - 1]), None);
        // The same basic response under another type, or with an error status: not read.
        let bytes = OcspResponse::from_der(&full)
            .unwrap()
            .response_bytes
            .unwrap();
        for (status, oid) in [
            (ResponseStatus::Successful, NONCE),
            (ResponseStatus::TryLater, BASIC),
        ] {
            let odd = OcspResponse {
                response_status: status,
                response_bytes: Some(ResponseBytes {
                    response_type: oid,
                    response: bytes.response.clone(),
                }),
            }
            .to_der()
            .unwrap();
            assert_eq!(freshness(&odd), None, "{status:?} {oid}");
        }
    }

    #[test]
    fn requests_parse_and_nonsense_does_not() {
        let q = parse_request(&request(true)).unwrap();
        assert_eq!(q.cert_ids.len(), 1);
        assert_eq!(serial_hex(&q.cert_ids[0]), "1234");
        assert!(q.nonce.is_some());
        assert!(parse_request(&request(false)).unwrap().nonce.is_none());
        let r = request(true);
        for bad in [
            &r[..r.len() - 3],
            &[][..],
            &[0x30, 0x00][..],
            b"GET / HTTP/1.1",
        ] {
            assert!(parse_request(bad).is_err(), "{bad:?}");
        }
        assert!(parse_request(&vec![0x30; MAX_REQUEST + 1]).is_err());
    }

    #[test]
    fn the_canonical_cert_id_is_what_openssl_sends() {
        let h = IssuerHashes::new(b"name", b"key");
        let mut sent = parse_request(&request(false)).unwrap().cert_ids.remove(0);
        sent.issuer_name_hash = OctetString::new(sha1::Sha1::digest(b"name").to_vec()).unwrap();
        sent.issuer_key_hash = OctetString::new(sha1::Sha1::digest(b"key").to_vec()).unwrap();
        let ours = h.sha1_cert_id("1234").unwrap();
        assert_eq!(ours, sent);
        assert!(h.matches(&ours));
        assert_eq!(serial_hex(&h.sha1_cert_id("0abc").unwrap()), "0abc");
        // A serial with its top bit set keeps its value (a leading zero octet in DER).
        let high = h.sha1_cert_id("ff01").unwrap();
        assert_eq!(serial_hex(&high), "ff01");
        assert!(high
            .to_der()
            .unwrap()
            .windows(4)
            .any(|w| w == [0x02, 0x03, 0x00, 0xff]));
        assert!(h.sha1_cert_id("zz").is_err());
    }

    #[test]
    fn issuer_hashes_match_their_own_cert_ids_only() {
        let h = IssuerHashes::new(b"name", b"key");
        let mut id = parse_request(&request(false)).unwrap().cert_ids.remove(0);
        assert!(!h.matches(&id));
        id.issuer_name_hash = OctetString::new(sha1::Sha1::digest(b"name").to_vec()).unwrap();
        id.issuer_key_hash = OctetString::new(sha1::Sha1::digest(b"key").to_vec()).unwrap();
        assert!(h.matches(&id));
        id.hash_algorithm.oid = ObjectIdentifier::new_unwrap("1.2.3");
        assert!(!h.matches(&id));
    }

    #[test]
    fn responses_encode_and_errors_are_three_bytes() {
        let q = parse_request(&request(true)).unwrap();
        let id = q.cert_ids[0].clone();
        let tbs = response_data(
            &[7u8; 20],
            1_700_000_000,
            1_700_003_600,
            &[
                (id.clone(), Status::Good),
                (
                    id.clone(),
                    Status::Revoked {
                        at: 1_690_000_000,
                        reason: Some(1),
                    },
                ),
                (id, Status::Unknown),
            ],
            q.nonce.as_ref(),
        )
        .unwrap();
        let alg = AlgorithmIdentifierOwned {
            oid: ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11"),
            parameters: Some(Any::from(Null)),
        }
        .to_der()
        .unwrap();
        let der = signed_response(&tbs, &alg, &[9u8; 256], &[]).unwrap();
        let back = OcspResponse::from_der(&der).unwrap();
        assert_eq!(back.response_status, ResponseStatus::Successful);
        let basic =
            BasicOcspResponse::from_der(back.response_bytes.unwrap().response.as_bytes()).unwrap();
        assert_eq!(basic.tbs_response_data.to_der().unwrap(), tbs);
        let data = ResponseData::from_der(&tbs).unwrap();
        assert_eq!(data.responses.len(), 3);
        assert!(matches!(
            data.responses[1].cert_status,
            CertStatusAsn1::Revoked(RevokedInfo {
                revocation_reason: Some(CrlReason::KeyCompromise),
                ..
            })
        ));
        assert_eq!(data.response_extensions.unwrap()[0].extn_id, NONCE);
        let e = error_response(ResponseStatus::MalformedRequest);
        assert_eq!(
            OcspResponse::from_der(&e).unwrap().response_status,
            ResponseStatus::MalformedRequest
        );
    }
}
