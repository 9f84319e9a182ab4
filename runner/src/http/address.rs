//! Which network addresses a plugin's request may reach (issue 5, part 1: the classifier).
//!
//! A host is resolved first and every address it resolves to is checked here; the request then
//! goes to an address that was checked (no DNS rebinding in between). Anything that is not a
//! public unicast address is denied unless the operator allows that host explicitly: loopback,
//! private, shared (CGNAT), link-local (169.254.169.254, the cloud metadata service, included),
//! unique-local, unspecified, multicast, broadcast, documentation, benchmarking and reserved
//! ranges, and IPv6 forms that embed an IPv4 address (mapped, compatible, NAT64, 6to4) are judged
//! by the IPv4 address inside them.
//!
//! Hosts spelled as numbers the way `inet_aton` reads them (`2130706433`, `0x7f000001`,
//! `0177.0.0.1`, `127.1`, `0`) are parsed to the address they name, so they cannot pass as
//! names: [`numeric_host`].
//!
//! Not wired into the gate yet: issue 5 adds the operator allowlist it needs (every test and
//! the demo talk to mocks on 127.0.0.1), then [`Gate::send`](super::Gate) uses it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// Why an address is not reachable by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Denied {
    #[error("a loopback address")]
    Loopback,
    #[error("a private address")]
    Private,
    #[error("a shared (carrier-grade NAT) address")]
    Shared,
    #[error("a link-local address (this includes cloud metadata services)")]
    LinkLocal,
    #[error("a unique-local address")]
    UniqueLocal,
    #[error("the unspecified address")]
    Unspecified,
    #[error("a multicast address")]
    Multicast,
    #[error("the broadcast address")]
    Broadcast,
    #[error("a documentation or benchmarking address")]
    Documentation,
    #[error("a reserved address")]
    Reserved,
}

fn v4(s: &str) -> Ipv4Net {
    // The ranges below are literals; a typo would be caught by the tests.
    s.parse().unwrap_or_else(|_| Ipv4Net::default())
}

fn v6(s: &str) -> Ipv6Net {
    s.parse().unwrap_or_else(|_| Ipv6Net::default())
}

/// `None` for a public unicast address; otherwise why it is denied by default.
pub(crate) fn classify(ip: IpAddr) -> Option<Denied> {
    match ip {
        IpAddr::V4(a) => classify_v4(a),
        IpAddr::V6(a) => classify_v6(a),
    }
}

fn classify_v4(a: Ipv4Addr) -> Option<Denied> {
    let ranges: [(&str, Denied); 16] = [
        ("0.0.0.0/8", Denied::Unspecified),
        ("10.0.0.0/8", Denied::Private),
        ("100.64.0.0/10", Denied::Shared),
        ("127.0.0.0/8", Denied::Loopback),
        ("169.254.0.0/16", Denied::LinkLocal),
        ("172.16.0.0/12", Denied::Private),
        ("192.0.0.0/24", Denied::Reserved),
        ("192.0.2.0/24", Denied::Documentation),
        ("192.88.99.0/24", Denied::Reserved),
        ("192.168.0.0/16", Denied::Private),
        ("198.18.0.0/15", Denied::Documentation),
        ("198.51.100.0/24", Denied::Documentation),
        ("203.0.113.0/24", Denied::Documentation),
        ("224.0.0.0/4", Denied::Multicast),
        ("255.255.255.255/32", Denied::Broadcast),
        ("240.0.0.0/4", Denied::Reserved),
    ];
    ranges.iter().find(|(net, _)| v4(net).contains(&a)).map(|(_, why)| *why)
}

fn classify_v6(a: Ipv6Addr) -> Option<Denied> {
    if a.is_unspecified() {
        return Some(Denied::Unspecified);
    }
    if a.is_loopback() {
        return Some(Denied::Loopback);
    }
    // Forms that carry an IPv4 address are as reachable as that address.
    if let Some(inner) = embedded_v4(a) {
        return classify_v4(inner);
    }
    let ranges: [(&str, Denied); 6] = [
        ("fe80::/10", Denied::LinkLocal),
        ("fec0::/10", Denied::LinkLocal),
        ("fc00::/7", Denied::UniqueLocal),
        ("ff00::/8", Denied::Multicast),
        ("2001:db8::/32", Denied::Documentation),
        ("100::/64", Denied::Reserved),
    ];
    ranges.iter().find(|(net, _)| v6(net).contains(&a)).map(|(_, why)| *why)
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`),
/// NAT64 (`64:ff9b::a.b.c.d`) or 6to4 (`2002:AABB:CCDD::`) IPv6 address.
fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = a.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(mapped) = a.to_ipv4_mapped() {
        return Some(mapped);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] {
        return Some(low);
    }
    if v6("64:ff9b::/96").contains(&a) || v6("64:ff9b:1::/48").contains(&a) {
        return Some(low);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8));
    }
    None
}

/// The address a host spelled as numbers names, read the way `inet_aton` (and so curl,
/// browsers and many HTTP libraries) reads it: one to four parts, each decimal, `0x` hex or
/// `0`-prefixed octal, the last filling the remaining bytes — `2130706433`, `0x7f000001`,
/// `0177.0.0.1`, `127.1` and `0` are all addresses. Also a bracketed or bare IPv6 literal.
/// `None` for a name.
pub(crate) fn numeric_host(host: &str) -> Option<IpAddr> {
    let host = host.trim_end_matches('.');
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(v6) = host.parse::<Ipv6Addr>() {
        return Some(IpAddr::V6(v6));
    }
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(parts.len());
    for p in &parts {
        nums.push(parse_part(p)?);
    }
    let (last, head) = nums.split_last()?;
    if head.iter().any(|&n| n > 0xff) {
        return None;
    }
    let room = 8 * (4 - head.len() as u32);
    if room < 32 && *last >= (1u64 << room) {
        return None;
    }
    if *last > u64::from(u32::MAX) {
        return None;
    }
    let mut value: u64 = 0;
    for (i, n) in head.iter().enumerate() {
        value |= n << (24 - 8 * i as u32);
    }
    value |= last;
    u32::try_from(value).ok().map(|v| IpAddr::V4(Ipv4Addr::from(v)))
}

fn parse_part(p: &str) -> Option<u64> {
    if p.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        (h, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    if digits.is_empty() {
        // `0x` alone is 0 to inet_aton.
        return (radix == 16).then_some(0);
    }
    u64::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn public_addresses_pass() {
        for a in ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:81b::200e"] {
            assert_eq!(classify(ip(a)), None, "{a}");
        }
    }

    #[test]
    fn everything_else_is_denied_with_its_reason() {
        let cases = [
            ("127.0.0.1", Denied::Loopback),
            ("127.255.255.254", Denied::Loopback),
            ("10.0.0.1", Denied::Private),
            ("172.16.0.1", Denied::Private),
            ("172.31.255.255", Denied::Private),
            ("192.168.1.1", Denied::Private),
            ("100.64.0.1", Denied::Shared),
            ("169.254.169.254", Denied::LinkLocal),
            ("0.0.0.0", Denied::Unspecified),
            ("0.1.2.3", Denied::Unspecified),
            ("224.0.0.1", Denied::Multicast),
            ("239.255.255.250", Denied::Multicast),
            ("255.255.255.255", Denied::Broadcast),
            ("240.0.0.1", Denied::Reserved),
            ("192.0.2.1", Denied::Documentation),
            ("198.18.0.1", Denied::Documentation),
            ("::1", Denied::Loopback),
            ("::", Denied::Unspecified),
            ("fe80::1", Denied::LinkLocal),
            ("fd00::1", Denied::UniqueLocal),
            ("fc00::1", Denied::UniqueLocal),
            ("ff02::1", Denied::Multicast),
            ("2001:db8::1", Denied::Documentation),
            // IPv4 inside IPv6 is judged by the IPv4 address.
            ("::ffff:127.0.0.1", Denied::Loopback),
            ("::ffff:169.254.169.254", Denied::LinkLocal),
            ("::ffff:10.0.0.1", Denied::Private),
            ("::127.0.0.1", Denied::Loopback),
            ("64:ff9b::a9fe:a9fe", Denied::LinkLocal),
            ("2002:7f00:1::", Denied::Loopback),
        ];
        for (a, why) in cases {
            assert_eq!(classify(ip(a)), Some(why), "{a}");
        }
        assert_eq!(classify(ip("172.32.0.1")), None, "just outside 172.16/12");
        assert_eq!(classify(ip("::ffff:8.8.8.8")), None, "a mapped public address is public");
    }

    #[test]
    fn numeric_spellings_are_read_as_addresses() {
        let cases = [
            ("2130706433", "127.0.0.1"),
            ("0x7f000001", "127.0.0.1"),
            ("0X7F000001", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("0177.0.0.01", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("127.0.1", "127.0.0.1"),
            ("0", "0.0.0.0"),
            ("0x0", "0.0.0.0"),
            ("169.254.43518", "169.254.169.254"),
            ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
            ("2852039166", "169.254.169.254"),
            ("10.0.0.1", "10.0.0.1"),
            ("127.0.0.1.", "127.0.0.1"),
            ("[::1]", "::1"),
            ("[::ffff:7f00:1]", "::ffff:127.0.0.1"),
            ("::1", "::1"),
        ];
        for (host, want) in cases {
            assert_eq!(numeric_host(host), Some(ip(want)), "{host}");
        }
        for name in [
            "example.com",
            "okta.example.com",
            "localhost",
            "1.2.3.4.5",
            "256.1.1.1",
            "1.2.3.256",
            "0x1g",
            "",
            "4294967296",
            "1.16777216",
        ] {
            assert_eq!(numeric_host(name), None, "{name:?} is not an address");
        }
        // Every way of writing loopback above is denied once read.
        for host in ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "[::1]", "[::ffff:7f00:1]"] {
            assert_eq!(numeric_host(host).and_then(classify), Some(Denied::Loopback), "{host}");
        }
    }
}
