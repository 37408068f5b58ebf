//! Database URLs shown without their passwords.

/// A database URL without its secrets: the password of the authority part
/// (`postgres://user:***@host/db`) and any `password`/`sslpassword` query parameter.
pub fn redact_database_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b.to_string(), Some(q)),
        None => (url.to_string(), None),
    };
    let mut base = base;
    if let Some(scheme_end) = base.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = base[rest_start..]
            .find('/')
            .map(|i| rest_start + i)
            .unwrap_or(base.len());
        if let Some(at) = base[rest_start..authority_end].rfind('@') {
            let at = rest_start + at;
            if let Some(colon) = base[rest_start..at].find(':') {
                base.replace_range(rest_start + colon + 1..at, "***");
            }
        }
    }
    match query {
        None => base,
        Some(q) => {
            let q: Vec<String> = q
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _))
                        if k.eq_ignore_ascii_case("password")
                            || k.eq_ignore_ascii_case("sslpassword") =>
                    {
                        format!("{k}=***")
                    }
                    _ => kv.to_string(),
                })
                .collect();
            format!("{base}?{}", q.join("&"))
        }
    }
}
