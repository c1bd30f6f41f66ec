//! The SSRF guard: cronhook sends requests to user-given URLs from inside your network, so
//! by default it refuses every address that is not public.
//!
//! - Host names are resolved by cronhook itself ([`GuardedResolver`]); if ANY resolved
//!   address is blocked the attempt is refused (`blocked_address`, not retried). The
//!   addresses checked are the ones connected to: there is no second lookup, so DNS
//!   rebinding cannot switch them.
//! - IP literals are checked before sending and on every redirect hop.
//! - Names that only ever mean "inside" (`localhost`, `*.localhost`,
//!   `metadata.google.internal`...) are refused at creation time too ([`check_target`]).
//! - An operator allow-list (CIDRs and host names) lets chosen internal targets through;
//!   the embedded mode allows loopback by default, and says so at start-up.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::{Deserialize, Serialize};

/// Settings of the guard (`[delivery]` in the config file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SsrfConfig {
    /// Refuse private, loopback, link-local... destinations (strongly recommended).
    pub ssrf_guard: bool,
    /// Networks allowed anyway, comma-separated CIDRs (e.g. "10.1.0.0/16,127.0.0.1/32").
    pub allow_networks: String,
    /// Host names allowed anyway (and not checked), comma-separated.
    pub allow_hosts: String,
}

impl Default for SsrfConfig {
    fn default() -> Self {
        Self { ssrf_guard: true, allow_networks: String::new(), allow_hosts: String::new() }
    }
}

/// An IP network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Returns whether `ip` is inside the network (an IPv4-mapped v6 address matches its v4 form).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix)) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a.parse().map_err(|_| format!("{s:?} is not an IP network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() { max } else { p.parse::<u8>().map_err(|_| format!("{s:?}: bad prefix"))? };
        if prefix > max {
            return Err(format!("{s:?}: prefix longer than {max}"));
        }
        Ok(Self { addr: canonical(addr), prefix })
    }
}

/// The guard's decision rules.
#[derive(Debug, Clone, Default)]
pub struct SsrfPolicy {
    enabled: bool,
    allow_networks: Vec<Cidr>,
    allow_hosts: Vec<String>,
}

impl SsrfPolicy {
    /// Builds the policy; the error names the key.
    pub fn from_config(c: &SsrfConfig) -> Result<Self, String> {
        let allow_networks = c
            .allow_networks
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.parse::<Cidr>().map_err(|e| format!("delivery.allow_networks: {e}")))
            .collect::<Result<_, _>>()?;
        let allow_hosts =
            c.allow_hosts.split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect();
        Ok(Self { enabled: c.ssrf_guard, allow_networks, allow_hosts })
    }

    /// A policy that blocks nothing (tests of other concerns).
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Returns whether the guard is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn host_allowed(&self, host: &str) -> bool {
        let h = host.trim_end_matches('.').to_ascii_lowercase();
        self.allow_hosts.contains(&h)
    }

    /// Returns why `ip` may not be contacted, or `None`.
    pub fn refuse_ip(&self, ip: IpAddr) -> Option<&'static str> {
        if !self.enabled || self.allow_networks.iter().any(|n| n.contains(ip)) {
            return None;
        }
        blocked_reason(ip)
    }

    /// Returns why `host` (a name or an IP literal) may not be contacted without looking
    /// it up, or `None`.
    pub fn refuse_host(&self, host: &str) -> Option<String> {
        if !self.enabled || self.host_allowed(host) {
            return None;
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.refuse_ip(ip).map(|r| format!("{ip} is {r}"));
        }
        let h = host.trim_end_matches('.').to_ascii_lowercase();
        let internal = h == "localhost"
            || h.ends_with(".localhost")
            || h == "metadata"
            || h == "metadata.google.internal"
            || h.ends_with(".internal")
            || h.ends_with(".local");
        internal.then(|| format!("{h} is an internal name"))
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn v4_reason(a: Ipv4Addr) -> Option<&'static str> {
    let o = a.octets();
    let r = match o {
        [0, ..] => "unspecified (0.0.0.0/8)",
        [127, ..] => "loopback",
        [10, ..] => "private (10.0.0.0/8)",
        [172, b, ..] if (16..32).contains(&b) => "private (172.16.0.0/12)",
        [192, 168, ..] => "private (192.168.0.0/16)",
        [100, b, ..] if (64..128).contains(&b) => "carrier-grade NAT (100.64.0.0/10)",
        [169, 254, ..] => "link-local (169.254.0.0/16, cloud metadata)",
        [192, 0, 0, _] => "IETF protocol assignments (192.0.0.0/24)",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "documentation (TEST-NET)",
        [198, b, ..] if b == 18 || b == 19 => "benchmarking (198.18.0.0/15)",
        [a0, ..] if (224..240).contains(&a0) => "multicast",
        [a0, ..] if a0 >= 240 => "reserved (240.0.0.0/4)",
        _ => return None,
    };
    Some(r)
}

fn v6_reason(a: Ipv6Addr) -> Option<&'static str> {
    let s = a.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if a.is_unspecified() {
        return Some("unspecified (::)");
    }
    if a.is_loopback() {
        return Some("loopback (::1)");
    }
    if let Some(v4) = a.to_ipv4_mapped() {
        return v4_reason(v4).map(|_| "an IPv4-mapped non-public address");
    }
    match s {
        [0, 0, 0, 0, 0, 0, _, _] => v4_reason(embedded(s[6], s[7])).map(|_| "an IPv4-compatible non-public address"),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => {
            v4_reason(embedded(s[6], s[7])).map(|_| "a NAT64 form of a non-public address")
        }
        [0x2002, hi, lo, ..] => v4_reason(embedded(hi, lo)).map(|_| "a 6to4 form of a non-public address"),
        [0x2001, 0, ..] => Some("Teredo (2001::/32)"),
        [0x2001, 0xdb8, ..] => Some("documentation (2001:db8::/32)"),
        [0x100, 0, 0, 0, ..] => Some("discard-only (100::/64)"),
        [x, ..] if x & 0xfe00 == 0xfc00 => Some("unique local (fc00::/7)"),
        [x, ..] if x & 0xffc0 == 0xfe80 => Some("link-local (fe80::/10)"),
        [x, ..] if x & 0xffc0 == 0xfec0 => Some("site-local (fec0::/10)"),
        [x, ..] if x & 0xff00 == 0xff00 => Some("multicast (ff00::/8)"),
        _ => None,
    }
}

/// Returns why `ip` is not a public unicast address, or `None` when it is.
pub fn blocked_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) => v4_reason(a),
        IpAddr::V6(a) => v6_reason(a),
    }
}

/// Refusal of a destination; its text starts with `blocked address` (the error code).
#[derive(Debug, thiserror::Error)]
#[error("blocked address: {0}; allow it with delivery.allow_networks or delivery.allow_hosts")]
pub struct Blocked(pub String);

/// Looks a host name up (swappable in tests).
pub trait Lookup: Send + Sync + 'static {
    /// Returns the addresses of `host`.
    fn lookup(&self, host: String) -> Resolving;
}

/// The system resolver (getaddrinfo through tokio).
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: String) -> Resolving {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// A resolver for reqwest that refuses blocked addresses (see the module docs).
pub struct GuardedResolver {
    policy: Arc<SsrfPolicy>,
    lookup: Arc<dyn Lookup>,
}

impl GuardedResolver {
    /// Creates the resolver.
    pub fn new(policy: Arc<SsrfPolicy>, lookup: Arc<dyn Lookup>) -> Self {
        Self { policy, lookup }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let policy = self.policy.clone();
        let lookup = self.lookup.clone();
        let slot = crate::timing::slot();
        Box::pin(async move {
            if let Some(why) = policy.refuse_host(&host) {
                return Err(Box::new(Blocked(why)) as Box<dyn std::error::Error + Send + Sync>);
            }
            let start = std::time::Instant::now();
            let addrs: Vec<SocketAddr> = lookup.lookup(host.clone()).await?.collect();
            crate::timing::record_dns(&slot, start);
            if policy.host_allowed(&host) {
                return Ok(Box::new(addrs.into_iter()) as Addrs);
            }
            // ANY blocked address refuses the host: a name must not be usable to reach
            // inside, even partly (and hyper would try the addresses in turn).
            for a in &addrs {
                if let Some(why) = policy.refuse_ip(a.ip()) {
                    return Err(Box::new(Blocked(format!("{host} resolves to {} ({why})", a.ip())))
                        as Box<dyn std::error::Error + Send + Sync>);
                }
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Checks a target URL at creation time (no lookup): scheme, and names or literals that
/// can only be internal. Returns the reason it is refused.
pub fn check_target(url: &str, policy: &SsrfPolicy) -> Result<(), String> {
    let u = url::Url::parse(url).map_err(|e| format!("is not a valid URL ({e})"))?;
    match u.host_str() {
        Some(h) => policy.refuse_host(h).map_or(Ok(()), |why| Err(format!("is not allowed: {why}"))),
        None => Err("must have a host".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_blocked_range() {
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "192.0.0.8",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:c0a8:0101::1",
            "2002:7f00:0001::1",
            "2001::1",
            "2001:db8::1",
            "100::1",
        ] {
            assert!(blocked_reason(ip(s)).is_some(), "{s} must be blocked");
        }
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.0.1",
            "172.32.0.1",
            "100.63.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert!(blocked_reason(ip(s)).is_none(), "{s} is public");
        }
    }

    #[test]
    fn allow_list_and_names() {
        let p = SsrfPolicy::from_config(&SsrfConfig {
            ssrf_guard: true,
            allow_networks: "127.0.0.0/8, 10.1.0.0/16".into(),
            allow_hosts: "billing.internal".into(),
        })
        .unwrap();
        assert!(p.refuse_ip(ip("127.0.0.1")).is_none());
        assert!(p.refuse_ip(ip("::ffff:127.0.0.1")).is_none(), "mapped form matches the v4 network");
        assert!(p.refuse_ip(ip("10.1.9.9")).is_none());
        assert!(p.refuse_ip(ip("10.2.0.1")).is_some());
        assert!(p.refuse_ip(ip("::1")).is_some());
        assert!(p.refuse_host("billing.internal").is_none());
        for h in ["localhost", "api.localhost", "metadata.google.internal", "db.internal", "printer.local", "[::1]"] {
            assert!(p.refuse_host(h).is_some(), "{h}");
        }
        assert!(p.refuse_host("example.com").is_none());
        assert!(check_target("http://169.254.169.254/latest/meta-data", &p).is_err());
        assert!(check_target("https://example.com/hook", &p).is_ok());
        assert!(
            SsrfPolicy::from_config(&SsrfConfig { allow_networks: "nope".into(), ..SsrfConfig::default() })
                .unwrap_err()
                .starts_with("delivery.allow_networks")
        );
        assert!(SsrfPolicy::disabled().refuse_ip(ip("127.0.0.1")).is_none());
    }
}
