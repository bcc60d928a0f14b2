//! Where request nodes may connect: operator rules of hosts and networks,
//! and the destinations refused by default.
//!
//! Deny rules win; then the refused-by-default destinations ([`defaults`]) are
//! refused unless an allow entry names them; then, when there are allow rules,
//! a destination must match one. A rule is an IP address (`10.1.2.3`), a
//! network (`10.0.0.0/8`, `::1/128`), a host name (`api.example.com`) or a
//! domain suffix (`*.example.com`).
//!
//! The rules are applied to the host of every URL (the first and each redirect
//! hop) and to every address a name resolves to; the HTTP client connects
//! only to addresses that passed, and the address a response came from is
//! checked once more ([`client`]).

mod client;
mod defaults;
#[cfg(test)]
mod tests;

pub use client::{CrossOriginRedirect, Outbound, RequestProxy, TooManyRedirects, MAX_REDIRECTS};

use std::fmt;
use std::net::IpAddr;

/// What a rule matches.
#[derive(Debug, Clone, PartialEq)]
enum Pattern {
    /// An address or a network: the address and the prefix length.
    Net(IpAddr, u8),
    /// One host name.
    Host(String),
    /// A domain and every name under it.
    Suffix(String),
}

/// One operator rule, with its text as written (for error messages).
#[derive(Debug, Clone, PartialEq)]
struct Rule {
    pattern: Pattern,
    text: String,
}

/// Allow and deny rules for request nodes. The default allows every
/// destination except the refused-by-default ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostRules {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
}

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq)]
enum Why {
    /// A deny rule matched (its text).
    Denied(String),
    /// A refused-by-default rule matched and no allow entry names it.
    ByDefault {
        /// The rule as text (`169.254.0.0/16`).
        rule: &'static str,
        /// What it is (`link-local address`).
        what: &'static str,
    },
    /// There are allow rules and none matched.
    NotAllowed,
}

/// A destination the rules refuse. Its message names the host (and address)
/// and the rule, never a whole URL.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct Refused {
    host: String,
    addr: Option<IpAddr>,
    why: Why,
    redirect: bool,
}

impl Refused {
    /// The same refusal, met at a redirect hop.
    pub fn at_redirect(mut self) -> Refused {
        self.redirect = true;
        self
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.redirect {
            f.write_str("a redirect to ")?;
        }
        write!(f, "`{}`", self.host)?;
        if let Some(ip) = self.addr {
            if normal_host(&self.host) != ip.to_string() {
                write!(f, " ({ip})")?;
            }
        }
        match &self.why {
            Why::Denied(rule) => write!(
                f,
                " is denied by the server's request policy (deny rule `{rule}`)"
            ),
            Why::ByDefault { rule, what } => write!(
                f,
                " is refused by the server's request policy: {what} (rule `{rule}`), \
                 refused by default unless --request-allow names it"
            ),
            Why::NotAllowed => f.write_str(" is not in the server's request allow list"),
        }
    }
}

/// A host as the rules compare it: lower case, no brackets, no final dot.
fn normal_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// An address as the rules compare it: an IPv4-mapped IPv6 address
/// (`::ffff:169.254.169.254`) is the IPv4 address it maps to.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn parse_rule(text: &str) -> Result<Rule, String> {
    let written = text.trim();
    let t = written.to_ascii_lowercase();
    if t.is_empty() {
        return Err("empty rule".into());
    }
    let pattern = if let Some((ip, bits)) = t.split_once('/') {
        let ip: IpAddr = ip
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("`{written}`: not a network"))?;
        let bits: u8 = bits
            .parse()
            .map_err(|_| format!("`{written}`: bad prefix length"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if bits > max {
            return Err(format!("`{written}`: prefix longer than {max}"));
        }
        net(ip, bits)
    } else if let Ok(ip) = t
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        net(ip, if ip.is_ipv4() { 32 } else { 128 })
    } else if let Some(suffix) = t.strip_prefix("*.") {
        Pattern::Suffix(normal_host(suffix))
    } else {
        Pattern::Host(normal_host(&t))
    };
    Ok(Rule {
        pattern,
        text: written.to_string(),
    })
}

/// A network pattern; an IPv4-mapped IPv6 network becomes the IPv4 network.
fn net(ip: IpAddr, bits: u8) -> Pattern {
    match (canonical(ip), ip) {
        (IpAddr::V4(v4), IpAddr::V6(_)) if bits >= 96 => Pattern::Net(IpAddr::V4(v4), bits - 96),
        _ => Pattern::Net(ip, bits),
    }
}

/// True when `ip` is in the network `net/bits` (same address family).
fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits.min(32)))
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits.min(128)))
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

impl Pattern {
    fn matches_host(&self, host: &str) -> bool {
        match self {
            Pattern::Host(h) => h == host,
            Pattern::Suffix(s) => host == s || host.ends_with(&format!(".{s}")),
            Pattern::Net(..) => false,
        }
    }

    fn matches_ip(&self, ip: IpAddr) -> bool {
        matches!(self, Pattern::Net(net, bits) if in_net(ip, *net, *bits))
    }
}

impl HostRules {
    /// Parses rules (each entry may hold several, separated by commas).
    pub fn parse(allow: &[String], deny: &[String]) -> Result<HostRules, String> {
        let split = |list: &[String]| -> Result<Vec<Rule>, String> {
            list.iter()
                .flat_map(|s| s.split(','))
                .filter(|s| !s.trim().is_empty())
                .map(parse_rule)
                .collect()
        };
        Ok(HostRules {
            allow: split(allow)?,
            deny: split(deny)?,
        })
    }

    /// Checks the host of a URL before anything is sent to it. An IP literal
    /// is checked as an address; a name by name only (its addresses are
    /// checked as it resolves), unless `by_name_only` (a proxy resolves it):
    /// then the allow list is applied to the name too.
    pub fn check_url(&self, url: &reqwest::Url, by_name_only: bool) -> Result<(), Refused> {
        // `host_str` is the host as the URL parser normalised it: an IPv4
        // address in any form (`2852039166`, `0xa9.254.169.254`) is dotted
        // decimal, an IPv6 one is in brackets; both parse as addresses below.
        match url.host_str() {
            Some(host) => self.check_name(host, by_name_only),
            None => Ok(()),
        }
    }

    /// Checks a host name before it is resolved: deny rules and refused
    /// names; with `complete`, also the allow list (by name).
    pub fn check_name(&self, host: &str, complete: bool) -> Result<(), Refused> {
        if let Ok(ip) = normal_host(host).parse::<IpAddr>() {
            return self.check_ip(host, ip);
        }
        let name = normal_host(host);
        let refuse = |why| {
            Err(Refused {
                host: name.clone(),
                addr: None,
                why,
                redirect: false,
            })
        };
        if let Some(rule) = self.deny.iter().find(|r| r.pattern.matches_host(&name)) {
            return refuse(Why::Denied(rule.text.clone()));
        }
        if let Some(why) = self.refused_name(&name) {
            return refuse(why);
        }
        if complete
            && !self.allow.is_empty()
            && !self.allow.iter().any(|r| r.pattern.matches_host(&name))
        {
            return refuse(Why::NotAllowed);
        }
        Ok(())
    }

    /// Checks one address of `host` (the host itself when it is an IP
    /// literal, or one it resolved to, or the address connected to).
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), Refused> {
        let name = normal_host(host);
        let ip = canonical(ip);
        let refuse = |why| {
            Err(Refused {
                host: name.clone(),
                addr: Some(ip),
                why,
                redirect: false,
            })
        };
        if let Some(rule) = self
            .deny
            .iter()
            .find(|r| r.pattern.matches_ip(ip) || r.pattern.matches_host(&name))
        {
            return refuse(Why::Denied(rule.text.clone()));
        }
        if let Some(why) = self.refused_ip(ip).or_else(|| self.refused_name(&name)) {
            return refuse(why);
        }
        if !self.allow.is_empty()
            && !self
                .allow
                .iter()
                .any(|r| r.pattern.matches_ip(ip) || r.pattern.matches_host(&name))
        {
            return refuse(Why::NotAllowed);
        }
        Ok(())
    }

    /// The first refused-by-default network holding `ip` that no allow entry
    /// lifts. An entry lifts it when it lies inside that network and holds
    /// `ip`: `169.254.0.0/16` lifts the link-local rule but not the metadata
    /// address `169.254.169.254`, which must be named itself; `0.0.0.0/0`
    /// lifts nothing.
    fn refused_ip(&self, ip: IpAddr) -> Option<Why> {
        defaults::NETWORKS
            .iter()
            .filter(|d| in_net(ip, d.net, d.bits))
            .find(|d| {
                !self.allow.iter().any(|r| match r.pattern {
                    Pattern::Net(net, bits) => {
                        bits >= d.bits && in_net(net, d.net, d.bits) && in_net(ip, net, bits)
                    }
                    _ => false,
                })
            })
            .map(|d| Why::ByDefault {
                rule: d.text,
                what: d.what,
            })
    }

    /// A refused-by-default name, unless an allow entry is that very name.
    fn refused_name(&self, name: &str) -> Option<Why> {
        defaults::NAMES
            .iter()
            .find(|d| d.name == name)
            .filter(|_| {
                !self
                    .allow
                    .iter()
                    .any(|r| matches!(&r.pattern, Pattern::Host(h) if h == name))
            })
            .map(|d| Why::ByDefault {
                rule: d.name,
                what: d.what,
            })
    }
}
