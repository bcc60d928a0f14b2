//! Where request nodes may connect: operator rules of hosts and networks.
//!
//! Deny rules win; when there are allow rules, a destination must match one.
//! A rule is an IP address (`10.1.2.3`), a network (`10.0.0.0/8`, `::1/128`),
//! a host name (`api.example.com`) or a domain suffix (`*.example.com`).
//! Host names are checked by name and by every address they resolve to; the
//! HTTP client connects only to addresses that passed (see [`PolicyResolver`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
enum Rule {
    Net(IpAddr, u8),
    Host(String),
    Suffix(String),
}

/// Allow and deny rules for request nodes. The default allows everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostRules {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
}

fn parse_rule(text: &str) -> Result<Rule, String> {
    let t = text.trim().to_ascii_lowercase();
    if t.is_empty() {
        return Err("empty rule".into());
    }
    if let Some((ip, bits)) = t.split_once('/') {
        let ip: IpAddr = ip.parse().map_err(|_| format!("`{text}`: not a network"))?;
        let bits: u8 = bits
            .parse()
            .map_err(|_| format!("`{text}`: bad prefix length"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if bits > max {
            return Err(format!("`{text}`: prefix longer than {max}"));
        }
        return Ok(Rule::Net(ip, bits));
    }
    if let Ok(ip) = t
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(Rule::Net(ip, if ip.is_ipv4() { 32 } else { 128 }));
    }
    if let Some(suffix) = t.strip_prefix("*.") {
        return Ok(Rule::Suffix(suffix.to_string()));
    }
    Ok(Rule::Host(t))
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|v4| in_net(IpAddr::V4(v4), net, bits)),
        _ => false,
    }
}

impl Rule {
    fn matches_host(&self, host: &str) -> bool {
        match self {
            Rule::Host(h) => h == host,
            Rule::Suffix(s) => host == s || host.ends_with(&format!(".{s}")),
            Rule::Net(..) => false,
        }
    }

    fn matches_ip(&self, ip: IpAddr) -> bool {
        matches!(self, Rule::Net(net, bits) if in_net(ip, *net, *bits))
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

    /// Checks a host name (or IP literal) before connecting.
    pub fn check_host(&self, host: &str) -> Result<(), String> {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.check_ip(&host, ip);
        }
        if self.deny.iter().any(|r| r.matches_host(&host)) {
            return Err(format!(
                "requests to `{host}` are denied by the server's request policy"
            ));
        }
        Ok(())
    }

    /// Checks one resolved address of `host`.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), String> {
        if self.deny.iter().any(|r| r.matches_ip(ip)) {
            return Err(format!(
                "requests to `{host}` ({ip}) are denied by the server's request policy"
            ));
        }
        if !self.allow.is_empty()
            && !self
                .allow
                .iter()
                .any(|r| r.matches_ip(ip) || r.matches_host(host))
        {
            return Err(format!(
                "`{host}` ({ip}) is not in the server's request allow list"
            ));
        }
        Ok(())
    }
}

/// A DNS resolver that drops addresses the rules do not allow.
pub struct PolicyResolver(pub Arc<HostRules>);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let rules = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            rules.check_host(&host)?;
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| rules.check_ip(&host, a.ip()).is_ok())
                .collect();
            if allowed.is_empty() {
                return Err(format!(
                    "no address of `{host}` is allowed by the server's request policy"
                )
                .into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: &[&str], deny: &[&str]) -> HostRules {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        HostRules::parse(&v(allow), &v(deny)).expect("rules parse")
    }

    #[test]
    fn default_allows_everything() {
        let r = HostRules::default();
        assert!(r.check_host("example.com").is_ok());
        assert!(r.check_ip("x", "10.0.0.1".parse().expect("ip")).is_ok());
    }

    #[test]
    fn deny_wins_and_allow_restricts() {
        let r = rules(
            &["127.0.0.0/8", "*.example.com"],
            &["127.0.0.2", "bad.example.com"],
        );
        assert!(r.check_host("127.0.0.1").is_ok());
        assert!(r.check_host("127.0.0.2").is_err());
        assert!(r.check_host("10.0.0.1").is_err());
        assert!(r.check_host("bad.example.com").is_err());
        assert!(r
            .check_ip("api.example.com", "93.184.216.34".parse().expect("ip"))
            .is_ok());
        assert!(r
            .check_ip("other.org", "93.184.216.34".parse().expect("ip"))
            .is_err());
        let r = rules(&[], &["10.0.0.0/8, 192.168.0.0/16", "::1/128"]);
        assert!(r.check_host("10.9.9.9").is_err());
        assert!(r.check_host("[::1]").is_err());
        assert!(r.check_host("192.169.0.1").is_ok());
        assert!(HostRules::parse(&["10.0.0.0/99".into()], &[]).is_err());
    }
}
