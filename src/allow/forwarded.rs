//! Which address a request comes from: the peer, or, behind trusted proxies, the right-most
//! untrusted hop of a forwarded header. Pure logic over header bytes, bounded in hops and
//! bytes.

use std::net::{IpAddr, SocketAddr};

use super::cidr::IpSet;

/// At most this many hops of a forwarded header are looked at, from the right.
pub(crate) const MAX_HOPS: usize = 16;
/// At most this many bytes of forwarded headers are looked at, from the right.
pub(crate) const MAX_BYTES: usize = 1024;
/// One hop is at most this long (`[ffff:…:ffff]:65535` is 47 bytes).
const MAX_HOP_BYTES: usize = 64;

/// Why no client address could be had from a forwarded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unreadable {
    /// A hop that is not an IP address (with an optional port).
    Hop,
    /// More than [`MAX_HOPS`] hops, all of them trusted proxies.
    TooManyHops,
    /// More than [`MAX_BYTES`] bytes before an untrusted hop.
    TooLong,
}

impl Unreadable {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Hop => "a hop is not an IP address",
            Self::TooManyHops => "more trusted hops than the limit",
            Self::TooLong => "longer than the limit",
        }
    }
}

/// The client of a request that came in through the trusted proxies `trusted`, from the
/// values of its forwarded header (every line, in order): walking from the right, the first
/// hop that is not a trusted proxy. If every hop is trusted, the left-most one. `Ok(None)`
/// when the header has no hop at all (absent, or only empty entries).
///
/// Only the right-most hops are read, at most [`MAX_HOPS`] of them and [`MAX_BYTES`] bytes:
/// whatever lies further left was written by the client or by proxies nobody vouches for.
pub(crate) fn client_from_hops<'a, I>(
    values: I,
    trusted: &IpSet,
) -> Result<Option<IpAddr>, Unreadable>
where
    I: DoubleEndedIterator<Item = &'a [u8]>,
{
    let mut budget = MAX_BYTES;
    let mut hops = 0;
    let mut leftmost = None;
    for value in values.rev() {
        let mut rest = value;
        while !rest.is_empty() {
            let window = &rest[rest.len().saturating_sub(budget)..];
            let (hop, consumed) = match window.iter().rposition(|&b| b == b',') {
                Some(comma) => (&window[comma + 1..], window.len() - comma),
                None if window.len() == rest.len() => (window, window.len()),
                None => return Err(Unreadable::TooLong),
            };
            budget -= consumed;
            rest = &rest[..rest.len() - consumed];
            let hop = hop.trim_ascii();
            if hop.is_empty() {
                continue;
            }
            hops += 1;
            if hops > MAX_HOPS {
                return Err(Unreadable::TooManyHops);
            }
            let address = parse_hop(hop).ok_or(Unreadable::Hop)?.to_canonical();
            if !trusted.contains(address) {
                return Ok(Some(address));
            }
            leftmost = Some(address);
        }
    }
    Ok(leftmost)
}

/// One hop: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]` or
/// `[2001:db8::1]:443` (some load balancers add the port).
pub(crate) fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    if hop.len() > MAX_HOP_BYTES {
        return None;
    }
    let text = std::str::from_utf8(hop).ok()?;
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(address);
    }
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Some(address.ip());
    }
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> IpSet {
        IpSet::parse("10.0.0.0/8, 127.0.0.1, fd00::/8").unwrap()
    }

    fn client(values: &[&str]) -> Result<Option<IpAddr>, Unreadable> {
        client_from_hops(values.iter().map(|v| v.as_bytes()), &trusted())
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        // A forged left part, then what the proxies appended.
        assert_eq!(
            client(&["6.6.6.6, 203.0.113.9, 10.0.0.2, 10.0.0.1"]),
            Ok(ip("203.0.113.9"))
        );
        assert_eq!(client(&["203.0.113.9"]), Ok(ip("203.0.113.9")));
        // A client that writes its own header cannot hide behind a trusted address at the
        // left: the right-most untrusted hop decides.
        assert_eq!(client(&["10.0.0.5, 198.51.100.7"]), Ok(ip("198.51.100.7")));
    }

    #[test]
    fn several_header_lines_are_one_list_in_order() {
        assert_eq!(
            client(&["198.51.100.1, 203.0.113.9", "10.0.0.2"]),
            Ok(ip("203.0.113.9"))
        );
        assert_eq!(
            client(&["203.0.113.9", "10.0.0.2, 10.0.0.3"]),
            Ok(ip("203.0.113.9"))
        );
    }

    #[test]
    fn all_trusted_hops_give_the_left_most() {
        assert_eq!(client(&["10.0.0.9, 10.0.0.2"]), Ok(ip("10.0.0.9")));
    }

    #[test]
    fn no_hop_at_all_is_none() {
        assert_eq!(client(&[]), Ok(None));
        assert_eq!(client(&[" , ,"]), Ok(None));
        assert_eq!(client(&[""]), Ok(None));
    }

    #[test]
    fn ports_brackets_and_ipv6_are_read() {
        assert_eq!(client(&["203.0.113.9:5555"]), Ok(ip("203.0.113.9")));
        assert_eq!(client(&["[2001:db8::1]:443"]), Ok(ip("2001:db8::1")));
        assert_eq!(client(&["[2001:db8::1]"]), Ok(ip("2001:db8::1")));
        assert_eq!(
            client(&["2001:db8::1, fd00::1, 127.0.0.1"]),
            Ok(ip("2001:db8::1"))
        );
        // An IPv4-mapped hop is its IPv4 address (and trusted if that is).
        assert_eq!(
            client(&["203.0.113.9, ::ffff:10.0.0.1"]),
            Ok(ip("203.0.113.9"))
        );
        assert_eq!(client(&["::ffff:203.0.113.9"]), Ok(ip("203.0.113.9")));
    }

    #[test]
    fn an_unreadable_untrusted_hop_refuses_but_one_left_of_the_client_does_not_matter() {
        assert_eq!(client(&["unknown, 10.0.0.1"]), Err(Unreadable::Hop));
        assert_eq!(client(&["fe80::1%eth0"]), Err(Unreadable::Hop));
        assert_eq!(client(&["\"[2001:db8::1]\""]), Err(Unreadable::Hop));
        assert_eq!(
            client(&["garbage \u{7f}, 203.0.113.9, 10.0.0.1"]),
            Ok(ip("203.0.113.9"))
        );
        assert_eq!(client(&[&"9".repeat(65)]), Err(Unreadable::Hop));
    }

    #[test]
    fn hops_and_bytes_are_bounded() {
        let trusted_hops = vec!["10.0.0.1"; MAX_HOPS].join(", ");
        assert_eq!(client(&[&trusted_hops]), Ok(ip("10.0.0.1")));
        let too_many = format!("203.0.113.9, {trusted_hops}");
        assert_eq!(client(&[&too_many]), Err(Unreadable::TooManyHops));
        // A long header whose right-most hop is untrusted is read from the right only.
        let long_left = format!("{}, 203.0.113.9", "x".repeat(100_000));
        assert_eq!(client(&[&long_left]), Ok(ip("203.0.113.9")));
        // A single hop longer than the byte budget.
        assert_eq!(
            client(&[&" ".repeat(MAX_BYTES + 10)]),
            Err(Unreadable::TooLong)
        );
        // Padding between trusted hops counts against the budget.
        let padded = format!("203.0.113.9,{}10.0.0.1", " ".repeat(MAX_BYTES));
        assert_eq!(client(&[&padded]), Err(Unreadable::TooLong));
    }
}
