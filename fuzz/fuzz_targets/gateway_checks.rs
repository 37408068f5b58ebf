//! The gateway's request checks (route, SCEP query and body, OCSP): any method, path, query
//! and body get an answer, never a panic. The first bytes pick the method and split the rest.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let method = ["GET", "POST", "PUT", "HEAD"][usize::from(pick % 4)];
    let cut = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
    let (head, body) = rest.split_at(cut);
    let head = String::from_utf8_lossy(head);
    let (path, query) = head.split_once('?').unwrap_or((&head, ""));
    let _ = sigil::gateway::guard::route(method, path);
    let _ = sigil::gateway::guard::scep(method, query, body);
    let _ = sigil::gateway::guard::ocsp(method, path, body);
});
