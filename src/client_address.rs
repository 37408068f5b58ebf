//! Who is at the other end: the connection's address, or, when that is one of
//! `server.trusted_proxies` or `gateway.trusted_proxies` (a load balancer or reverse proxy in
//! front of Sigil), the client it names in `X-Forwarded-For`. Limits per source (failed
//! authentications, sign-ins started, the gateway's rate limit), the audit's `source:` records
//! and the logs use it, so a fleet behind one proxy does not share one budget, and an assessor
//! sees the person's address, not the proxy's.
//!
//! The header is read from the right: each proxy appends the address it received the request
//! from, so the rightmost entry not itself a trusted proxy is the client. Entries to its left
//! were written by the client and prove nothing. A header from a peer that is not a trusted
//! proxy is ignored: anyone can send one.

use std::net::IpAddr;

use ipnet::IpNet;

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// From the setting `setting` (`server.trusted_proxies`, `gateway.trusted_proxies`),
    /// named in the errors: addresses (`10.0.0.5`) and networks (`10.1.0.0/16`). Refused:
    /// what is not an address or a network, and a network wider than an IPv4 /8 or an IPv6
    /// /32 (`0.0.0.0/0`, `::/0`, `0.0.0.0/1`: every client could then name itself anything). An IPv4 address
    /// written mapped into IPv6 (`::ffff:10.0.0.5`) is that IPv4 address.
    pub fn parse(setting: &str, list: &[String]) -> Result<Self, String> {
        list.iter()
            .map(|s| {
                let s = s.trim();
                let net = s
                    .parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!(
                            "{setting}: `{s}` is not an address or a network (10.0.0.5, 10.1.0.0/16, fd00:10::/48)"
                        )
                    })?;
                let net = match net {
                    IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
                        Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                            .map(IpNet::V4)
                            .unwrap_or(net),
                        None => net,
                    },
                    other => other,
                };
                // Checked once read as what it is: `::ffff:0.0.0.0/96` is every IPv4 address.
                // Wider than an IPv4 /8 or an IPv6 /32 (a whole provider's allocation) is a
                // share of the Internet, not a proxy pool (and `0.0.0.0/1` with
                // `128.0.0.0/1` is everyone again).
                let narrowest = match net {
                    IpNet::V4(_) => 8,
                    IpNet::V6(_) => 32,
                };
                if net.prefix_len() < narrowest {
                    return Err(format!(
                        "{setting}: `{s}` trusts every address or nearly, so any client could name itself anything: list the proxies"
                    ));
                }
                Ok(net)
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    /// Whether `ip` is one of the proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// Whether a request from `peer` reached the trusted proxy over TLS: the proxy's own
    /// `X-Forwarded-Proto` (its rightmost value) says `https`.
    pub fn forwarded_https<'a>(&self, peer: IpAddr, proto: impl Iterator<Item = &'a str>) -> bool {
        self.trusts(peer)
            && proto
                .flat_map(|v| v.split(','))
                .last()
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
    }

    /// The client of a request that came from `peer` with these `X-Forwarded-For` header
    /// values (in the order received; each may list several addresses).
    pub fn client<'a>(&self, peer: IpAddr, forwarded: impl Iterator<Item = &'a str>) -> IpAddr {
        if self.0.is_empty() || !self.trusts(peer) {
            return canonical(peer);
        }
        let entries: Vec<&str> = forwarded.flat_map(|v| v.split(',')).collect();
        let mut client = canonical(peer);
        for entry in entries.iter().rev() {
            if !self.trusts(client) {
                break;
            }
            match address(entry) {
                Some(ip) => client = ip,
                // Not an address: nothing to its left can be believed; the last proxy that
                // wrote a readable hop is as far as this goes.
                None => break,
            }
        }
        client
    }
}

/// Header values as received, each read even with bytes that are not text (they make that
/// entry unreadable, which stops the walk there): a client cannot hide the line its proxy
/// appended to by spoiling it.
fn lines<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<String> {
    values
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

impl TrustedProxies {
    /// [`TrustedProxies::client`] from the raw `X-Forwarded-For` header values.
    pub fn client_from_header<'a>(
        &self,
        peer: IpAddr,
        values: impl Iterator<Item = &'a [u8]>,
    ) -> IpAddr {
        let lines = lines(values);
        self.client(peer, lines.iter().map(String::as_str))
    }

    /// [`TrustedProxies::forwarded_https`] from the raw `X-Forwarded-Proto` header values.
    pub fn forwarded_https_from_header<'a>(
        &self,
        peer: IpAddr,
        values: impl Iterator<Item = &'a [u8]>,
    ) -> bool {
        let lines = lines(values);
        self.forwarded_https(peer, lines.iter().map(String::as_str))
    }
}

/// An IPv4 address mapped into IPv6 (`::ffff:10.0.0.5`, as a dual-stack socket reports it)
/// is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`10.0.0.5:5123`,
/// `[2001:db8::1]:443`), as proxies write them.
fn address(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = e.strip_prefix('[') {
        let (inner, _) = rest.split_once(']')?;
        return inner.parse::<IpAddr>().ok().map(canonical);
    }
    let (host, port) = e.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(
            "server.trusted_proxies",
            &list.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(ip("10.0.0.5"), ["198.51.100.7"].into_iter()),
            ip("10.0.0.5")
        );
        // A peer that is not a trusted proxy cannot name another client.
        let p = proxies(&["10.0.0.5"]);
        assert_eq!(
            p.client(ip("203.0.113.9"), ["198.51.100.7"].into_iter()),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn the_rightmost_address_not_a_trusted_proxy_is_the_client() {
        let p = proxies(&["10.0.0.5", "10.1.0.0/16"]);
        // One proxy.
        assert_eq!(
            p.client(ip("10.0.0.5"), ["198.51.100.7"].into_iter()),
            ip("198.51.100.7")
        );
        // The client forged entries to the left of its own: they are not believed.
        assert_eq!(
            p.client(
                ip("10.0.0.5"),
                ["1.2.3.4, 198.51.100.7, 10.1.4.4"].into_iter()
            ),
            ip("198.51.100.7")
        );
        // Several header lines are one list, in order.
        assert_eq!(
            p.client(
                ip("10.0.0.5"),
                ["1.2.3.4", "198.51.100.7, 10.1.4.4"].into_iter()
            ),
            ip("198.51.100.7")
        );
        // Only proxies in the header: the leftmost is as far as it goes.
        assert_eq!(
            p.client(ip("10.0.0.5"), ["10.1.9.9, 10.1.4.4"].into_iter()),
            ip("10.1.9.9")
        );
        // No header: the proxy itself.
        assert_eq!(p.client(ip("10.0.0.5"), std::iter::empty()), ip("10.0.0.5"));
    }

    #[test]
    fn garbage_stops_the_walk_and_ports_and_mapped_addresses_are_read() {
        let p = proxies(&["10.0.0.5", "fd00::/32"]);
        assert_eq!(
            p.client(ip("10.0.0.5"), ["198.51.100.7, unknown"].into_iter()),
            ip("10.0.0.5")
        );
        assert_eq!(
            p.client(ip("10.0.0.5"), ["198.51.100.7:5123"].into_iter()),
            ip("198.51.100.7")
        );
        assert_eq!(
            p.client(ip("fd00::1"), ["[2001:db8::1]:443"].into_iter()),
            ip("2001:db8::1")
        );
        assert_eq!(
            p.client(ip("::ffff:10.0.0.5"), ["198.51.100.7"].into_iter()),
            ip("198.51.100.7")
        );
        assert_eq!(
            p.client(ip("::ffff:203.0.113.9"), ["198.51.100.7"].into_iter()),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn the_setting_names_addresses_or_networks() {
        assert!(TrustedProxies::parse(
            "server.trusted_proxies",
            &["10.0.0.5".into(), "10.1.0.0/16".into()]
        )
        .is_ok());
        assert!(TrustedProxies::parse("server.trusted_proxies", &["::1".into()]).is_ok());
        let e = TrustedProxies::parse("server.trusted_proxies", &["proxy.agency.gov".into()])
            .unwrap_err();
        assert!(e.contains("proxy.agency.gov"), "{e}");
        assert!(e.starts_with("server.trusted_proxies: "), "{e}");
        assert!(TrustedProxies::parse("server.trusted_proxies", &["10.0.0.0/33".into()]).is_err());
        for all in [
            "0.0.0.0/0",
            "::/0",
            "::ffff:0.0.0.0/96",
            "::ffff:10.0.0.5/96",
            "0.0.0.0/1",
            "128.0.0.0/7",
            "2000::/3",
            "::/8",
            "2001:db8::/31",
        ] {
            let e = TrustedProxies::parse("server.trusted_proxies", &[all.into()]).unwrap_err();
            assert!(e.contains("every address"), "{e}");
        }
        // Written mapped into IPv6, an IPv4 proxy is still that proxy.
        let p = proxies(&["::ffff:10.0.0.5", "::ffff:10.2.0.0/112"]);
        assert!(p.trusts(ip("10.0.0.5")) && p.trusts(ip("::ffff:10.0.0.5")));
        assert!(p.trusts(ip("10.2.3.4")) && !p.trusts(ip("10.3.0.1")));
    }

    #[test]
    fn raw_header_lines_with_bytes_that_are_not_text_are_read_not_dropped() {
        let p = proxies(&["10.0.0.5"]);
        // The client's own line is spoiled; the line the proxy appended still names it.
        let raw: [&[u8]; 2] = [b"\xff203.0.113.1", b"198.51.100.7"];
        assert_eq!(
            p.client_from_header(ip("10.0.0.5"), raw.into_iter()),
            ip("198.51.100.7")
        );
        // Spoiled to the right of the walk: it stops at the proxy.
        let raw: [&[u8]; 1] = [b"198.51.100.7, \xff"];
        assert_eq!(
            p.client_from_header(ip("10.0.0.5"), raw.into_iter()),
            ip("10.0.0.5")
        );
        let proto: [&[u8]; 2] = [b"\xff", b"https"];
        assert!(p.forwarded_https_from_header(ip("10.0.0.5"), proto.into_iter()));
    }

    #[test]
    fn tls_is_the_trusted_proxys_word_only() {
        let p = proxies(&["10.0.0.5"]);
        assert!(p.forwarded_https(ip("10.0.0.5"), ["https"].into_iter()));
        assert!(p.forwarded_https(ip("10.0.0.5"), ["http, HTTPS"].into_iter()));
        // The client's own claim, left of what the proxy wrote, does not count.
        assert!(!p.forwarded_https(ip("10.0.0.5"), ["https, http"].into_iter()));
        assert!(!p.forwarded_https(ip("10.0.0.5"), std::iter::empty()));
        assert!(!p.forwarded_https(ip("203.0.113.9"), ["https"].into_iter()));
    }

    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        /// Entries as proxies and clients write them: the listed proxies, outsiders, mapped
        /// and bracketed forms, ports, and garbage.
        fn entry() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("10.0.0.5".to_string()),
                Just("10.1.2.3:443".to_string()),
                Just("::ffff:10.0.0.5".to_string()),
                Just("[fd00::1]:8443".to_string()),
                (any::<u32>()).prop_map(|n| std::net::Ipv4Addr::from(n).to_string()),
                (any::<u128>()).prop_map(|n| format!("[{}]:1", std::net::Ipv6Addr::from(n))),
                "[ -~]{0,12}",
                Just("unknown".to_string()),
                Just(String::new()),
            ]
        }

        fn lines() -> impl Strategy<Value = Vec<String>> {
            proptest::collection::vec(
                proptest::collection::vec(entry(), 0..4).prop_map(|e| e.join(",")),
                0..4,
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]
            /// Whatever the header says: from a stranger it is ignored; from a listed proxy
            /// the answer is the peer or an address the header holds; and what a client
            /// writes to the left of a readable outsider the proxy appended changes nothing.
            #[test]
            fn the_header_names_no_one_it_does_not_hold(
                header in lines(),
                left in lines(),
                outsider in any::<u32>(),
                stranger in any::<bool>(),
            ) {
                let p = TrustedProxies::parse(
                    "server.trusted_proxies",
                    &["10.0.0.0/16".to_string(), "fd00::/32".to_string()],
                )
                .unwrap();
                let peer: IpAddr = if stranger { "203.0.113.9" } else { "10.0.0.5" }.parse().unwrap();
                let got = p.client(peer, header.iter().map(String::as_str));
                if stranger {
                    prop_assert_eq!(got, peer);
                } else {
                    let held: Vec<IpAddr> = header
                        .iter()
                        .flat_map(|l| l.split(','))
                        .filter_map(address)
                        .collect();
                    prop_assert!(got == peer || held.contains(&got), "{got} from {header:?}");
                }
                // The proxy appends the outsider it received the request from.
                let outsider = IpAddr::V4(std::net::Ipv4Addr::from(outsider));
                prop_assume!(!p.trusts(outsider));
                let mut proxied = left.clone();
                proxied.extend(header.iter().cloned());
                proxied.push(outsider.to_string());
                prop_assert_eq!(
                    p.client("10.0.0.5".parse().unwrap(), proxied.iter().map(String::as_str)),
                    outsider
                );
            }
        }
    }
}
