//! NUL characters in text a client sends: refused at the door with 400 and a reason. No
//! identifier, name, comment or search Sigil keeps or looks up holds one, SQLite would keep it
//! and PostgreSQL refuses it (which would read as "the store is unavailable" and a 503 telling
//! the client to retry what can never work). Checked in the request's address (path and query,
//! `%00` once decoded), in JSON bodies (the `\u0000` escape; a raw NUL is not JSON) and in the
//! console's forms.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;

/// What the client is told.
pub(crate) const REFUSED: &str =
    "a NUL character (%00, \\u0000) is not accepted in the address, a field or a search";

/// Does the request's path or query carry an encoded NUL (`%00`)?
pub(crate) fn in_address(path_and_query: &str) -> bool {
    path_and_query.contains("%00")
}

/// Does a JSON text carry a NUL in a string (the escape `\u0000`, not an escaped backslash
/// followed by `u0000`)?
pub(crate) fn in_json(body: &[u8]) -> bool {
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'\\' {
            if body.get(i + 1) == Some(&b'u') && body.get(i + 2..i + 6) == Some(b"0000") {
                return true;
            }
            // Skip the escaped character, whatever it is (`\\` included).
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// The 400 an API client gets, in the API's error shape.
pub(crate) fn refused_json() -> HttpResponse {
    super::api::error(StatusCode::BAD_REQUEST, "nul_character", REFUSED)
}

/// The 400 anyone else gets (a SCEP client, a browser, a relying party).
pub(crate) fn refused_text() -> HttpResponse {
    HttpResponse::build(StatusCode::BAD_REQUEST)
        .content_type("text/plain; charset=utf-8")
        .body(REFUSED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_nul_in_the_address_is_found() {
        assert!(in_address("/api/v1/certificates/%00"));
        assert!(in_address("/api/v1/certificates?subject=a%00b"));
        assert!(!in_address("/api/v1/certificates?subject=a%2500b"));
        assert!(!in_address("/scep/default?operation=GetCACaps"));
    }

    #[test]
    fn only_the_nul_escape_counts_in_json() {
        assert!(in_json(br#"{"name":"a\u0000b"}"#));
        assert!(in_json(br#"{"a\u0000":1}"#));
        assert!(!in_json(br#"{"name":"a\\u0000b"}"#), "an escaped backslash");
        assert!(
            in_json(br#"{"name":"a\\\u0000b"}"#),
            "a backslash, then a NUL"
        );
        assert!(!in_json(br#"{"name":"a\u0001b \u00e9"}"#));
        assert!(!in_json(br#"{"name":"ends in a backslash\"#));
        assert!(!in_json(b""));
    }
}
