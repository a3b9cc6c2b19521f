//! Address arithmetic for IP address management: CIDRs, allocation pools and the
//! choice of a free address, over `u128` so IPv4 and IPv6 share one code path.
//!
//! Invariants:
//! - A [`Cidr`] is always normalised: its address has no host bits set (Neutron refuses
//!   `10.0.0.1/24` and names `10.0.0.0/24` instead).
//! - A [`Pool`] never spans two IP versions and its first address is not after its last.
//! - [`first_free`] is deterministic: the lowest address of the pools (in pool order)
//!   that is neither taken nor excluded, so re-deciding on the same state picks the
//!   same address.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// An IP address as a number, with its version (4 or 6).
fn num(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address `n` of version `v`.
fn addr(v: u8, n: u128) -> IpAddr {
    if v == 4 {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

/// The version of an address (4 or 6).
pub fn version(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        4
    } else {
        6
    }
}

/// A network prefix, e.g. `10.0.0.0/24` or `fd00::/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cidr {
    /// The network address (no host bits).
    pub ip: IpAddr,
    /// The prefix length (0-32 for IPv4, 0-128 for IPv6).
    pub prefix: u8,
}

/// Why a CIDR does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// Not `address/prefix` with a valid address and prefix length.
    Invalid,
    /// Host bits are set: the normalised CIDR is given.
    HostBits(Cidr),
}

impl Cidr {
    fn bits(self) -> u8 {
        if self.ip.is_ipv4() {
            32
        } else {
            128
        }
    }

    /// Parses `address/prefix` (a bare address is a host prefix, /32 or /128, as
    /// netaddr reads it). Host bits set are an error carrying the normalised CIDR.
    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = a.trim().parse().map_err(|_| CidrError::Invalid)?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 3 => {
                p.parse::<u8>().map_err(|_| CidrError::Invalid)?
            }
            Some(_) => return Err(CidrError::Invalid),
            None => max,
        };
        if prefix > max {
            return Err(CidrError::Invalid);
        }
        let c = Cidr { ip, prefix }.normalised();
        if c.ip != ip {
            return Err(CidrError::HostBits(c));
        }
        Ok(c)
    }

    /// The same prefix with the host bits cleared.
    pub fn normalised(self) -> Cidr {
        let v = version(self.ip);
        Cidr {
            ip: addr(v, num(self.ip) & self.mask()),
            prefix: self.prefix,
        }
    }

    fn mask(self) -> u128 {
        let bits = self.bits() as u32;
        let host = bits - self.prefix as u32;
        let all = if bits == 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        };
        if host >= 128 {
            0
        } else {
            all & !((1u128 << host) - 1)
        }
    }

    /// 4 or 6.
    pub fn version(self) -> u8 {
        version(self.ip)
    }

    /// Lowest address (the network address).
    pub fn first(self) -> IpAddr {
        self.ip
    }

    /// Highest address (the IPv4 broadcast address).
    pub fn last(self) -> IpAddr {
        addr(self.version(), num(self.ip) | !self.mask() & self.all())
    }

    fn all(self) -> u128 {
        if self.bits() == 128 {
            u128::MAX
        } else {
            (1u128 << self.bits()) - 1
        }
    }

    /// Whether `ip` is inside the prefix.
    pub fn contains(self, ip: IpAddr) -> bool {
        version(ip) == self.version() && num(ip) & self.mask() == num(self.ip)
    }

    /// Whether the two prefixes share an address.
    pub fn overlaps(self, other: Cidr) -> bool {
        self.version() == other.version() && (self.contains(other.ip) || other.contains(self.ip))
    }

    /// The address `offset` after the network address (None when outside).
    pub fn nth(self, offset: u128) -> Option<IpAddr> {
        let n = num(self.ip).checked_add(offset)?;
        let a = addr(self.version(), n);
        self.contains(a).then_some(a)
    }

    /// Number of addresses (saturating at `u128::MAX`).
    pub fn size(self) -> u128 {
        let host = (self.bits() - self.prefix) as u32;
        if host >= 128 {
            u128::MAX
        } else {
            1u128 << host
        }
    }

    /// Neutron's default allocation pool: every address but the network address, the
    /// IPv4 broadcast address and the gateway (split around it). Empty when nothing is
    /// left (a /31 or /32 without room).
    pub fn default_pools(self, gateway: Option<IpAddr>) -> Vec<Pool> {
        let v = self.version();
        let lo = num(self.ip);
        let hi = num(self.last());
        // Neutron: IPv4 skips network and broadcast; IPv6 skips the subnet-router
        // anycast address (the first) only. Prefixes of /31 and /32 keep all.
        let (first, last) = if v == 4 && self.prefix >= 31 {
            (lo, hi)
        } else if v == 4 {
            (lo + 1, hi - 1)
        } else if self.prefix >= 127 {
            (lo, hi)
        } else {
            (lo + 1, hi)
        };
        let mut pools = vec![];
        let gw = gateway.filter(|g| self.contains(*g)).map(num);
        match gw {
            Some(g) if (first..=last).contains(&g) => {
                if g > first {
                    pools.push(Pool::new(addr(v, first), addr(v, g - 1)));
                }
                if g < last {
                    pools.push(Pool::new(addr(v, g + 1), addr(v, last)));
                }
            }
            _ if first <= last => pools.push(Pool::new(addr(v, first), addr(v, last))),
            _ => {}
        }
        pools
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

/// An allocation pool: a range of addresses, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pool {
    /// First address.
    pub start: IpAddr,
    /// Last address.
    pub end: IpAddr,
}

impl Pool {
    /// A pool from `start` to `end` (the caller checks versions and order).
    pub fn new(start: IpAddr, end: IpAddr) -> Pool {
        Pool { start, end }
    }

    /// Whether both ends have one version and `start <= end`.
    pub fn is_valid(self) -> bool {
        version(self.start) == version(self.end) && num(self.start) <= num(self.end)
    }

    /// Whether `ip` is in the pool.
    pub fn contains(self, ip: IpAddr) -> bool {
        version(ip) == version(self.start) && (num(self.start)..=num(self.end)).contains(&num(ip))
    }

    /// Whether the two pools share an address.
    pub fn overlaps(self, o: Pool) -> bool {
        version(self.start) == version(o.start)
            && num(self.start) <= num(o.end)
            && num(o.start) <= num(self.end)
    }

    /// Whether the whole pool lies in `cidr`.
    pub fn within(self, cidr: Cidr) -> bool {
        cidr.contains(self.start) && cidr.contains(self.end)
    }

    /// Number of addresses.
    pub fn size(self) -> u128 {
        num(self.end)
            .saturating_sub(num(self.start))
            .saturating_add(1)
    }
}

/// The lowest address of `pools` (in order) that is not in `taken`.
pub fn first_free(pools: &[Pool], taken: &BTreeSet<IpAddr>) -> Option<IpAddr> {
    for p in pools {
        let v = version(p.start);
        let (lo, hi) = (num(p.start), num(p.end));
        // Walk the taken addresses inside the pool in order: the first gap is free.
        let mut next = lo;
        for t in taken.range(p.start..=p.end) {
            let t = num(*t);
            if t > next {
                break;
            }
            if t == next {
                if next == hi {
                    next = hi.wrapping_add(1);
                    break;
                }
                next += 1;
            }
        }
        if next >= lo && next <= hi {
            return Some(addr(v, next));
        }
    }
    None
}

/// The modified EUI-64 address of `mac` in an IPv6 /64 prefix (SLAAC, RFC 4291).
pub fn eui64(prefix: Cidr, mac: &str) -> Option<IpAddr> {
    if prefix.version() != 6 || prefix.prefix > 64 {
        return None;
    }
    let b: Vec<u8> = mac
        .split(':')
        .map(|h| u8::from_str_radix(h, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    if b.len() != 6 {
        return None;
    }
    let iid = [b[0] ^ 0x02, b[1], b[2], 0xff, 0xfe, b[3], b[4], b[5]];
    let iid = iid.iter().fold(0u128, |a, x| (a << 8) | *x as u128);
    Some(addr(6, num(prefix.ip) | iid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_normalised_only() {
        let c = Cidr::parse("10.0.0.0/24").unwrap();
        assert_eq!(c.last(), ip("10.0.0.255"));
        assert_eq!(c.size(), 256);
        assert_eq!(
            Cidr::parse("10.0.0.1/24"),
            Err(CidrError::HostBits(c)),
            "host bits are refused, naming the network"
        );
        assert_eq!(Cidr::parse("10.0.0.0/33"), Err(CidrError::Invalid));
        assert_eq!(Cidr::parse("banana/8"), Err(CidrError::Invalid));
        assert_eq!(Cidr::parse("10.0.0.0/+8"), Err(CidrError::Invalid));
        let v6 = Cidr::parse("2001:db8::/64").unwrap();
        assert!(v6.contains(ip("2001:db8::ffff")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(Cidr::parse("10.0.0.0/8")
            .unwrap()
            .overlaps(Cidr::parse("10.1.0.0/16").unwrap()));
        assert!(!c.overlaps(Cidr::parse("10.0.1.0/24").unwrap()));
        assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().size(), 1 << 32);
    }

    #[test]
    fn default_pools_skip_network_broadcast_and_gateway() {
        let c = Cidr::parse("10.0.0.0/24").unwrap();
        assert_eq!(
            c.default_pools(Some(ip("10.0.0.1"))),
            vec![Pool::new(ip("10.0.0.2"), ip("10.0.0.254"))]
        );
        assert_eq!(
            c.default_pools(Some(ip("10.0.0.100"))),
            vec![
                Pool::new(ip("10.0.0.1"), ip("10.0.0.99")),
                Pool::new(ip("10.0.0.101"), ip("10.0.0.254"))
            ]
        );
        assert_eq!(
            c.default_pools(None),
            vec![Pool::new(ip("10.0.0.1"), ip("10.0.0.254"))]
        );
        let v6 = Cidr::parse("2001:db8::/64").unwrap();
        assert_eq!(
            v6.default_pools(Some(ip("2001:db8::1")))[0].start,
            ip("2001:db8::2")
        );
    }

    #[test]
    fn first_free_takes_the_lowest_gap() {
        let pools = [
            Pool::new(ip("10.0.0.2"), ip("10.0.0.4")),
            Pool::new(ip("10.0.0.10"), ip("10.0.0.10")),
        ];
        let mut taken = BTreeSet::new();
        assert_eq!(first_free(&pools, &taken), Some(ip("10.0.0.2")));
        taken.insert(ip("10.0.0.2"));
        taken.insert(ip("10.0.0.4"));
        assert_eq!(first_free(&pools, &taken), Some(ip("10.0.0.3")));
        taken.insert(ip("10.0.0.3"));
        assert_eq!(first_free(&pools, &taken), Some(ip("10.0.0.10")));
        taken.insert(ip("10.0.0.10"));
        assert_eq!(first_free(&pools, &taken), None);
    }

    #[test]
    fn eui64_follows_rfc_4291() {
        let p = Cidr::parse("2001:db8::/64").unwrap();
        assert_eq!(
            eui64(p, "fa:16:3e:12:34:56"),
            Some(ip("2001:db8::f816:3eff:fe12:3456"))
        );
    }
}
