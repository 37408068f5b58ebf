//! The readers SCEP and OCSP requests need before anything else, shared by the core and the
//! gateway (so both read a request the same way): query parameters as SCEP clients write
//! them, their lenient base64, and a DER length check.

use base64::Engine;

/// The raw value of a query parameter, percent escapes decoded, `+` kept.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k.eq_ignore_ascii_case(name) {
            let mut out = Vec::with_capacity(v.len());
            let b = v.as_bytes();
            let mut i = 0;
            while i < b.len() {
                // Work on bytes: slicing the `str` could split a multibyte character.
                if b[i] == b'%' && i + 2 < b.len() {
                    if let (Some(h), Some(l)) = (hex_digit(b[i + 1]), hex_digit(b[i + 2])) {
                        out.push(h << 4 | l);
                        i += 3;
                        continue;
                    }
                }
                out.push(b[i]);
                i += 1;
            }
            return Some(String::from_utf8_lossy(&out).into_owned());
        }
    }
    None
}

/// The value of one ASCII hex digit.
fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Base64 as SCEP clients send it: line breaks ignored, a space taken for the `+` a query
/// decoder turned into one, URL-safe letters accepted, padding optional.
pub fn lenient_base64(text: &str) -> Option<Vec<u8>> {
    let mut s: String = text
        .chars()
        .filter(|c| !matches!(c, '\r' | '\n' | '\t'))
        .map(|c| match c {
            '-' | ' ' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while s.ends_with('=') {
        s.pop();
    }
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s.as_bytes())
        .ok()
}

/// Is this one complete DER SEQUENCE (its length field matches the bytes)?
pub fn is_der_sequence(b: &[u8]) -> bool {
    if b.len() < 2 || b[0] != 0x30 {
        return false;
    }
    let (len, head) = match b[1] {
        n if n < 0x80 => (n as usize, 2),
        0x81..=0x84 => {
            let k = (b[1] & 0x7f) as usize;
            if b.len() < 2 + k {
                return false;
            }
            let mut l = 0usize;
            for x in &b[2..2 + k] {
                l = (l << 8) | *x as usize;
            }
            (l, 2 + k)
        }
        // Indefinite length (BER): accepted, the core reads it.
        0x80 => return b.len() >= 4,
        _ => return false,
    };
    head + len == b.len()
}
