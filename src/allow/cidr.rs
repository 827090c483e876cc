//! [`IpNet`] and [`IpSet`]: addresses and CIDR ranges, IPv4 and IPv6, parsed from text and
//! matched in `O(log n)`. Pure logic, no tower types.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The longest entry text an error quotes (an IPv6 CIDR is at most 43 characters).
const MAX_QUOTED_CHARS: usize = 64;

/// One address or CIDR range, IPv4 or IPv6: `101.226.103.0/25`, `127.0.0.1`,
/// `2001:db8::/32`, `::1`.
///
/// An address without a prefix is a range of one. Host bits after the prefix are cleared
/// (`10.1.2.3/8` is `10.0.0.0/8`). An IPv4-mapped IPv6 range (`::ffff:10.0.0.0/104`) is
/// stored as the IPv4 range it maps (`10.0.0.0/8`), and [`contains`](Self::contains) maps
/// an IPv4-mapped address (`::ffff:127.0.0.1`, what a dual-stack socket reports for an IPv4
/// peer) to IPv4 before comparing, so each can be written either way.
///
/// ```
/// use std::net::IpAddr;
/// use tower_wechat::allow::IpNet;
///
/// let net: IpNet = "101.226.103.0/25".parse().unwrap();
/// assert!(net.contains("101.226.103.127".parse::<IpAddr>().unwrap()));
/// assert!(!net.contains("101.226.103.128".parse::<IpAddr>().unwrap()));
/// assert!(net.contains("::ffff:101.226.103.1".parse::<IpAddr>().unwrap()));
/// assert_eq!("10.1.2.3/8".parse::<IpNet>().unwrap().to_string(), "10.0.0.0/8");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    network: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// The range of `prefix` leading bits of `address` (host bits cleared); `None` when
    /// `prefix` is longer than the address (32 for IPv4, 128 for IPv6).
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    /// use tower_wechat::allow::IpNet;
    ///
    /// let net = IpNet::new(Ipv4Addr::new(192, 0, 2, 77).into(), 24).unwrap();
    /// assert_eq!(net.to_string(), "192.0.2.0/24");
    /// assert!(IpNet::new(Ipv4Addr::LOCALHOST.into(), 33).is_none());
    /// ```
    pub fn new(address: IpAddr, prefix: u8) -> Option<Self> {
        match address {
            IpAddr::V4(v4) => (prefix <= 32).then(|| Self::v4(v4, prefix)),
            IpAddr::V6(v6) => {
                if prefix > 128 {
                    return None;
                }
                match v6.to_ipv4_mapped() {
                    Some(v4) if prefix >= 96 => Some(Self::v4(v4, prefix - 96)),
                    _ => Some(Self {
                        network: IpAddr::V6(Ipv6Addr::from(v6.to_bits() & mask128(prefix))),
                        prefix,
                    }),
                }
            }
        }
    }

    /// The range of one address.
    ///
    /// ```
    /// use std::net::Ipv6Addr;
    /// use tower_wechat::allow::IpNet;
    ///
    /// assert_eq!(IpNet::host(Ipv6Addr::LOCALHOST.into()).to_string(), "::1/128");
    /// ```
    pub fn host(address: IpAddr) -> Self {
        match address.to_canonical() {
            IpAddr::V4(v4) => Self::v4(v4, 32),
            v6 => Self {
                network: v6,
                prefix: 128,
            },
        }
    }

    fn v4(address: Ipv4Addr, prefix: u8) -> Self {
        Self {
            network: IpAddr::V4(Ipv4Addr::from(address.to_bits() & mask32(prefix))),
            prefix,
        }
    }

    /// The first address of the range.
    ///
    /// ```
    /// use tower_wechat::allow::IpNet;
    ///
    /// let net: IpNet = "2001:db8::1/32".parse().unwrap();
    /// assert_eq!(net.network().to_string(), "2001:db8::");
    /// ```
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length: 32 (IPv4) or 128 (IPv6) for a single address.
    ///
    /// ```
    /// use tower_wechat::allow::IpNet;
    ///
    /// assert_eq!("127.0.0.1".parse::<IpNet>().unwrap().prefix(), 32);
    /// ```
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `address` is in the range (an IPv4-mapped IPv6 address counts as IPv4).
    ///
    /// ```
    /// use std::net::IpAddr;
    /// use tower_wechat::allow::IpNet;
    ///
    /// let net: IpNet = "2001:db8::/32".parse().unwrap();
    /// assert!(net.contains("2001:db8:ffff::1".parse::<IpAddr>().unwrap()));
    /// assert!(!net.contains("2001:db9::1".parse::<IpAddr>().unwrap()));
    /// ```
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, address.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                address.to_bits() & mask32(self.prefix) == network.to_bits()
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                address.to_bits() & mask128(self.prefix) == network.to_bits()
            }
            _ => false,
        }
    }

    /// First and last address as integers, IPv4 or IPv6.
    fn bounds(&self) -> Bounds {
        match self.network {
            IpAddr::V4(network) => {
                let start = network.to_bits();
                Bounds::V4(start, start | !mask32(self.prefix))
            }
            IpAddr::V6(network) => {
                let start = network.to_bits();
                Bounds::V6(start, start | !mask128(self.prefix))
            }
        }
    }
}

enum Bounds {
    V4(u32, u32),
    V6(u128, u128),
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl fmt::Debug for IpNet {
    /// The same as `Display`: `10.0.0.0/8`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for IpNet {
    type Err = IpParseError;

    /// An address (`127.0.0.1`, `::1`) or a CIDR range (`10.0.0.0/8`, `2001:db8::/32`),
    /// surrounding spaces ignored. No zone ids (`fe80::1%eth0`), wildcards or netmasks.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let entry = text.trim();
        let error = |why| IpParseError::new(entry, why);
        let (address, prefix) = match entry.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (entry, None),
        };
        if address.is_empty() {
            return Err(error("empty"));
        }
        let address: IpAddr = address
            .parse()
            .map_err(|_| error("not an IPv4 or IPv6 address"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(digits) => {
                if digits.is_empty()
                    || digits.len() > 3
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(error("the prefix length is not a number"));
                }
                match digits.parse::<u8>() {
                    Ok(prefix) if prefix <= max => prefix,
                    _ if max == 32 => return Err(error("an IPv4 prefix length is at most 32")),
                    _ => return Err(error("an IPv6 prefix length is at most 128")),
                }
            }
        };
        IpNet::new(address, prefix).ok_or_else(|| error("the prefix is too long"))
    }
}

/// A set of [`IpNet`]s: the allow-list, or the trusted proxies.
///
/// Parse it from a list separated by commas (or white space), as in an environment
/// variable. Lookups are a binary search over the merged ranges, so a list of hundreds of
/// entries (WeChat publishes about that many) costs a few comparisons per request.
///
/// ```
/// use std::net::IpAddr;
/// use tower_wechat::allow::IpSet;
///
/// let set: IpSet = "101.226.103.0/25, 127.0.0.1, ::1".parse().unwrap();
/// assert_eq!(set.len(), 3);
/// assert!(set.contains("101.226.103.9".parse::<IpAddr>().unwrap()));
/// assert!(set.contains("::ffff:127.0.0.1".parse::<IpAddr>().unwrap()));
/// assert!(!set.contains("192.0.2.1".parse::<IpAddr>().unwrap()));
///
/// let error = "10.0.0.0/8, 10.0.0.300".parse::<IpSet>().unwrap_err();
/// assert_eq!(error.entry(), "10.0.0.300");
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct IpSet {
    /// The entries as given, in order (duplicates kept out).
    nets: Vec<IpNet>,
    /// Merged, sorted, disjoint ranges.
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl IpSet {
    /// The empty set: contains nothing.
    ///
    /// ```
    /// use tower_wechat::allow::IpSet;
    ///
    /// assert!(IpSet::new().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a list of addresses and CIDR ranges separated by commas or white space (empty
    /// entries are skipped). The error names the first bad entry.
    ///
    /// ```
    /// use tower_wechat::allow::IpSet;
    ///
    /// let set = IpSet::parse("10.0.0.0/8,\n192.168.0.0/16 fd00::/8").unwrap();
    /// assert_eq!(set.len(), 3);
    /// ```
    pub fn parse(list: &str) -> Result<Self, IpParseError> {
        list.split(|c: char| c == ',' || c.is_ascii_whitespace())
            .filter(|entry| !entry.is_empty())
            .map(str::parse::<IpNet>)
            .collect()
    }

    /// The loopback ranges, `127.0.0.0/8` and `::1`: e.g. trusted proxies for an nginx on the
    /// same machine.
    ///
    /// ```
    /// use std::net::IpAddr;
    /// use tower_wechat::allow::IpSet;
    ///
    /// assert!(IpSet::loopback().contains("127.0.0.1".parse::<IpAddr>().unwrap()));
    /// ```
    pub fn loopback() -> Self {
        [
            IpNet::v4(Ipv4Addr::LOCALHOST, 8),
            IpNet::host(Ipv6Addr::LOCALHOST.into()),
        ]
        .into_iter()
        .collect()
    }

    /// Whether `address` is in one of the ranges (an IPv4-mapped IPv6 address counts as
    /// IPv4).
    ///
    /// ```
    /// use std::net::IpAddr;
    /// use tower_wechat::allow::IpSet;
    ///
    /// let set = IpSet::parse("2001:db8::/32").unwrap();
    /// assert!(set.contains("2001:db8::42".parse::<IpAddr>().unwrap()));
    /// ```
    pub fn contains(&self, address: IpAddr) -> bool {
        match address.to_canonical() {
            IpAddr::V4(v4) => find(&self.v4, v4.to_bits()),
            IpAddr::V6(v6) => find(&self.v6, v6.to_bits()),
        }
    }

    /// The number of distinct entries.
    ///
    /// ```
    /// use tower_wechat::allow::IpSet;
    ///
    /// assert_eq!(IpSet::parse("127.0.0.1, 127.0.0.1/32").unwrap().len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.nets.len()
    }

    /// Whether the set has no entry.
    ///
    /// ```
    /// use tower_wechat::allow::IpSet;
    ///
    /// assert!(IpSet::parse(" , ").unwrap().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The entries, in the order given (duplicates left out).
    ///
    /// ```
    /// use tower_wechat::allow::IpSet;
    ///
    /// let set = IpSet::parse("::1, 10.0.0.0/8").unwrap();
    /// let text: Vec<String> = set.iter().map(ToString::to_string).collect();
    /// assert_eq!(text, ["::1/128", "10.0.0.0/8"]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = &IpNet> {
        self.nets.iter()
    }

    fn insert(&mut self, net: IpNet) {
        if self.nets.contains(&net) {
            return;
        }
        self.nets.push(net);
        match net.bounds() {
            Bounds::V4(start, end) => insert(&mut self.v4, start, end),
            Bounds::V6(start, end) => insert(&mut self.v6, start, end),
        }
    }
}

/// Adds `start..=end` to the sorted, disjoint `ranges`, merging what overlaps or touches.
fn insert<T>(ranges: &mut Vec<(T, T)>, mut start: T, mut end: T)
where
    T: Copy + Ord + num::Step,
{
    // The first range that could touch: one whose end reaches start - 1.
    let from = ranges.partition_point(|&(_, e)| e.next() < start);
    let mut to = from;
    while to < ranges.len() && ranges[to].0 <= end.next() {
        start = start.min(ranges[to].0);
        end = end.max(ranges[to].1);
        to += 1;
    }
    ranges.splice(from..to, [(start, end)]);
}

/// Whether `value` is in one of the sorted, disjoint `ranges`.
fn find<T: Copy + Ord>(ranges: &[(T, T)], value: T) -> bool {
    let after = ranges.partition_point(|&(start, _)| start <= value);
    after > 0 && ranges[after - 1].1 >= value
}

mod num {
    /// The next integer, saturating at the top.
    pub(super) trait Step {
        fn next(self) -> Self;
    }

    impl Step for u32 {
        fn next(self) -> Self {
            self.saturating_add(1)
        }
    }

    impl Step for u128 {
        fn next(self) -> Self {
            self.saturating_add(1)
        }
    }
}

impl FromIterator<IpNet> for IpSet {
    fn from_iter<I: IntoIterator<Item = IpNet>>(iter: I) -> Self {
        let mut set = Self::new();
        for net in iter {
            set.insert(net);
        }
        set
    }
}

impl Extend<IpNet> for IpSet {
    fn extend<I: IntoIterator<Item = IpNet>>(&mut self, iter: I) {
        for net in iter {
            self.insert(net);
        }
    }
}

impl FromStr for IpSet {
    type Err = IpParseError;

    /// The same as [`IpSet::parse`].
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        Self::parse(list)
    }
}

impl fmt::Debug for IpSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.nets.iter()).finish()
    }
}

impl fmt::Display for IpSet {
    /// The entries separated by `, `.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, net) in self.nets.iter().enumerate() {
            if n > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

/// An entry that is not an address or CIDR range.
///
/// Its `Display` quotes the entry (escaped, at most 64 characters: IP addresses are not
/// secrets, and naming the bad one is what lets a person fix it) and says what is wrong.
///
/// ```
/// use tower_wechat::allow::IpNet;
///
/// let error = "10.0.0.0/33".parse::<IpNet>().unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "\"10.0.0.0/33\" is not an IP address or CIDR range: an IPv4 prefix length is at most 32"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpParseError {
    entry: String,
    why: &'static str,
}

impl IpParseError {
    fn new(entry: &str, why: &'static str) -> Self {
        let entry = match entry.char_indices().nth(MAX_QUOTED_CHARS) {
            Some((end, _)) => format!("{}…", &entry[..end]),
            None => entry.to_owned(),
        };
        Self { entry, why }
    }

    /// The bad entry (cut to 64 characters).
    pub fn entry(&self) -> &str {
        &self.entry
    }
}

impl fmt::Display for IpParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an IP address or CIDR range: {}",
            self.entry, self.why
        )
    }
}

impl std::error::Error for IpParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    #[test]
    fn ipv4_ranges_match_their_addresses_and_no_others() {
        let range = net("101.226.103.0/25");
        assert!(range.contains(ip("101.226.103.0")));
        assert!(range.contains(ip("101.226.103.127")));
        assert!(!range.contains(ip("101.226.103.128")));
        assert!(!range.contains(ip("101.226.102.255")));
        assert!(net("0.0.0.0/0").contains(ip("255.255.255.255")));
        assert!(!net("0.0.0.0/0").contains(ip("::1")));
        assert!(net("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!net("192.0.2.7").contains(ip("192.0.2.8")));
        assert_eq!(net("10.1.2.3/8"), net("10.0.0.0/8"));
    }

    #[test]
    fn ipv6_ranges_match_their_addresses_and_no_others() {
        let range = net("2001:db8::/32");
        assert!(range.contains(ip("2001:db8::")));
        assert!(range.contains(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!range.contains(ip("2001:db9::")));
        assert!(!range.contains(ip("10.0.0.1")));
        assert!(net("::/0").contains(ip("ffff::1")));
        assert!(net("::1").contains(ip("::1")));
        assert!(!net("::1").contains(ip("::2")));
        assert_eq!(net("2001:db8::1/64").to_string(), "2001:db8::/64");
    }

    #[test]
    fn ipv4_mapped_addresses_and_ranges_are_ipv4() {
        // A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d.
        assert!(net("127.0.0.1").contains(ip("::ffff:127.0.0.1")));
        assert!(net("10.0.0.0/8").contains(ip("::ffff:10.9.8.7")));
        let mapped = net("::ffff:10.0.0.0/104");
        assert_eq!(mapped, net("10.0.0.0/8"));
        assert!(mapped.contains(ip("10.1.1.1")));
        // A range wider than the mapped block stays IPv6.
        assert_eq!(net("::ffff:0:0/95").network(), ip("::fffe:0:0"));
        let set = IpSet::parse("::ffff:192.0.2.1").unwrap();
        assert!(set.contains(ip("192.0.2.1")));
        assert!(set.contains(ip("::ffff:192.0.2.1")));
        assert!(!set.contains(ip("192.0.2.2")));
    }

    #[test]
    fn bad_entries_are_named_with_what_is_wrong() {
        let cases = [
            ("", "empty"),
            ("/24", "empty"),
            ("10.0.0.300", "not an IPv4 or IPv6 address"),
            ("101.226.103.*", "not an IPv4 or IPv6 address"),
            ("fe80::1%eth0", "not an IPv4 or IPv6 address"),
            ("10.0.0.0/33", "an IPv4 prefix length is at most 32"),
            ("::/129", "an IPv6 prefix length is at most 128"),
            ("10.0.0.0/", "the prefix length is not a number"),
            ("10.0.0.0/+8", "the prefix length is not a number"),
            ("10.0.0.0/0008", "the prefix length is not a number"),
            ("10.0.0.0/255.0.0.0", "the prefix length is not a number"),
            ("10.0.0.0/8/8", "the prefix length is not a number"),
        ];
        for (text, why) in cases {
            let error = text.parse::<IpNet>().unwrap_err();
            assert_eq!(error.why, why, "{text:?}");
            assert_eq!(error.entry(), text);
        }
        let long = "x".repeat(500);
        let error = long.parse::<IpNet>().unwrap_err();
        assert_eq!(error.entry().chars().count(), 65);
        assert!(error.to_string().len() < 200);
        // Quoted with escapes: a control character cannot forge a log line.
        let error = "1.2.3.4\n5".parse::<IpNet>().unwrap_err();
        assert!(error.to_string().starts_with("\"1.2.3.4\\n5\""), "{error}");
    }

    #[test]
    fn lists_split_on_commas_and_white_space() {
        let set = IpSet::parse(" 10.0.0.0/8 ,192.168.1.1,,\t::1\n").unwrap();
        assert_eq!(set.to_string(), "10.0.0.0/8, 192.168.1.1/32, ::1/128");
        assert_eq!(
            IpSet::parse("10.0.0.0/8, nope").unwrap_err().entry(),
            "nope"
        );
        assert!(IpSet::parse("").unwrap().is_empty());
        assert_eq!(
            format!("{:?}", set),
            "{10.0.0.0/8, 192.168.1.1/32, ::1/128}"
        );
    }

    #[test]
    fn overlapping_and_adjacent_ranges_merge() {
        let set = IpSet::parse("10.0.0.0/24, 10.0.1.0/24, 10.0.0.128/25, 10.0.3.0/24").unwrap();
        assert_eq!(set.len(), 4);
        assert_eq!(set.v4.len(), 2);
        for inside in ["10.0.0.0", "10.0.1.255", "10.0.3.9"] {
            assert!(set.contains(ip(inside)), "{inside}");
        }
        for outside in ["9.255.255.255", "10.0.2.0", "10.0.4.0"] {
            assert!(!set.contains(ip(outside)), "{outside}");
        }
        let everything = IpSet::parse("0.0.0.0/0, 255.255.255.255, ::/0").unwrap();
        assert_eq!((everything.v4.len(), everything.v6.len()), (1, 1));
        assert!(everything.contains(ip("255.255.255.255")));
    }

    #[test]
    fn set_lookups_agree_with_a_linear_scan() {
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..50 {
            let nets: Vec<IpNet> = (0..40)
                .map(|_| {
                    let bits = next();
                    // A small address space, so ranges overlap often.
                    let address = Ipv4Addr::from(0x0a00_0000 | (bits as u32 & 0xffff));
                    IpNet::new(address.into(), 16 + (bits >> 40) as u8 % 17).unwrap()
                })
                .collect();
            let set: IpSet = nets.iter().copied().collect();
            for _ in 0..500 {
                let probe = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (next() as u32 & 0x1_ffff)));
                let linear = nets.iter().any(|net| net.contains(probe));
                assert_eq!(set.contains(probe), linear, "{probe} in {set}");
            }
        }
    }
}
