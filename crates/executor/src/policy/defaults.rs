//! Destinations refused unless an allow entry names them (SPEC §3, Request
//! destinations): link-local networks, cloud metadata endpoints and the
//! unspecified address. Loopback and private networks are not here: calling
//! internal systems is the common case, and operators can deny them.
//!
//! Specific entries come first, so that an error names the most telling rule
//! (`169.254.169.254` is a metadata endpoint before it is link-local).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A refused-by-default network.
pub(super) struct Network {
    pub net: IpAddr,
    pub bits: u8,
    /// The network as written in messages and docs.
    pub text: &'static str,
    pub what: &'static str,
}

/// A refused-by-default host name.
pub(super) struct Name {
    pub name: &'static str,
    pub what: &'static str,
}

const fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// Refused networks, most specific first. IPv4-mapped IPv6 addresses are
/// compared as the IPv4 address they map to, so `::ffff:169.254.169.254` is
/// refused too.
pub(super) const NETWORKS: &[Network] = &[
    Network {
        net: v4(169, 254, 169, 254),
        bits: 32,
        text: "169.254.169.254",
        what: "the cloud metadata endpoint (AWS, Azure, Google Cloud, Oracle, DigitalOcean…)",
    },
    Network {
        net: IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
        bits: 128,
        text: "fd00:ec2::254",
        what: "the cloud metadata endpoint (AWS, IPv6)",
    },
    // Alibaba Cloud's metadata service. It sits in the shared address space
    // 100.64.0.0/10 (carrier-grade NAT, also Tailscale's range), which stays
    // allowed: only this one address is refused.
    Network {
        net: v4(100, 100, 100, 200),
        bits: 32,
        text: "100.100.100.200",
        what: "the cloud metadata endpoint (Alibaba Cloud)",
    },
    Network {
        net: v4(169, 254, 0, 0),
        bits: 16,
        text: "169.254.0.0/16",
        what: "a link-local address",
    },
    Network {
        net: IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)),
        bits: 10,
        text: "fe80::/10",
        what: "a link-local address",
    },
    // "This network": 0.0.0.0 is the unspecified address, which Linux
    // connects to the local host; nothing else in 0.0.0.0/8 is a destination.
    Network {
        net: v4(0, 0, 0, 0),
        bits: 8,
        text: "0.0.0.0/8",
        what: "the unspecified address",
    },
    Network {
        net: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        bits: 128,
        text: "::",
        what: "the unspecified address",
    },
];

/// Refused names (compared lower case, without a final dot). They resolve to
/// refused addresses anyway; the name matters when a proxy resolves it.
pub(super) const NAMES: &[Name] = &[Name {
    name: "metadata.google.internal",
    what: "the cloud metadata endpoint (Google Cloud)",
}];
