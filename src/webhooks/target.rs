//! Which URLs a subscription may send to. Only `http` and `https`, no credentials in the URL,
//! and no address in a denied range (loopback, private, link-local, ... by default) unless an
//! allowed range covers it: a subscription must not let whoever holds the admin token make
//! this node probe services behind its firewall. The ranges are checked when a subscription is
//! saved (literal addresses), and again on every connection ([`Resolver`]), so a name that
//! resolves to an internal address later (DNS rebinding) is refused then.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The longest URL a subscription may have.
pub const MAX_URL_BYTES: usize = 2_048;

/// Why a URL cannot be a subscription's target.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("the URL does not parse: {0}")]
    Unparsable(String),
    #[error("the URL is longer than {MAX_URL_BYTES} bytes")]
    TooLong,
    #[error("only http and https URLs are allowed")]
    Scheme,
    #[error("credentials in a URL are not allowed; receivers verify the signature instead")]
    Credentials,
    #[error("the URL has no host")]
    NoHost,
    #[error("{0} is in a denied address range (webhooks.deny_networks)")]
    Denied(IpAddr),
    #[error("{0} names this machine or an internal service")]
    InternalName(String),
}

/// The ranges a target may not reach, and the exceptions.
#[derive(Debug, Clone, Default)]
pub struct Ranges {
    pub denied: Vec<IpNet>,
    pub allowed: Vec<IpNet>,
}

impl Ranges {
    /// Whether `address` may be connected to. An IPv4 address written as IPv6
    /// (`::ffff:127.0.0.1`) is judged as the IPv4 address it is.
    pub fn permits(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        self.allowed.iter().any(|net| net.contains(&address))
            || !self.denied.iter().any(|net| net.contains(&address))
    }
}

/// `url` checked as a subscription's target.
///
/// # Errors
/// The [`TargetError`] that says what is wrong with it.
pub fn check(url: &str, ranges: &Ranges) -> Result<Url, TargetError> {
    if url.len() > MAX_URL_BYTES {
        return Err(TargetError::TooLong);
    }
    let parsed = Url::parse(url.trim()).map_err(|e| TargetError::Unparsable(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(TargetError::Scheme);
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(TargetError::Credentials);
    }
    match parsed.host() {
        None => Err(TargetError::NoHost),
        Some(url::Host::Ipv4(v4)) => literal(IpAddr::V4(v4), ranges, parsed.clone()),
        Some(url::Host::Ipv6(v6)) => literal(IpAddr::V6(v6), ranges, parsed.clone()),
        Some(url::Host::Domain(name)) => {
            // Names that only ever mean this machine or a cloud's internal services; any
            // other name is judged by the addresses it resolves to, at every connection.
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let internal = name == "localhost"
                || name.ends_with(".localhost")
                || name.ends_with(".internal")
                || name.ends_with(".local");
            if internal && ranges.allowed.is_empty() {
                return Err(TargetError::InternalName(name));
            }
            Ok(parsed.clone())
        }
    }
}

fn literal(address: IpAddr, ranges: &Ranges, url: Url) -> Result<Url, TargetError> {
    if ranges.permits(address) {
        Ok(url)
    } else {
        Err(TargetError::Denied(address))
    }
}

/// Name resolution that drops denied addresses: a connection never reaches one, whatever a
/// name resolves to when it is used.
#[derive(Debug, Clone)]
pub struct Resolver {
    ranges: Arc<Ranges>,
}

impl Resolver {
    pub fn new(ranges: Arc<Ranges>) -> Resolver {
        Resolver { ranges }
    }
}

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let ranges = Arc::clone(&self.ranges);
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| ranges.permits(a.ip()))
                .collect();
            if permitted.is_empty() {
                let denied = found
                    .first()
                    .map_or_else(|| "nothing".to_owned(), |a| a.ip().to_string());
                return Err(format!(
                    "{} resolves to {denied}, in a denied address range (webhooks.deny_networks)",
                    name.as_str()
                )
                .into());
            }
            let addrs: Addrs = Box::new(permitted.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_ranges() -> Ranges {
        Ranges {
            denied: crate::config::DEFAULT_DENIED
                .iter()
                .filter_map(|r| r.parse().ok())
                .collect(),
            allowed: Vec::new(),
        }
    }

    #[test]
    fn internal_addresses_in_any_spelling_are_refused_and_public_ones_pass() {
        let ranges = default_ranges();
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://[::1]/hook",
            "http://[::ffff:127.0.0.1]/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.1.2.3/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0.0.0.0/",
            "http://[::7f00:1]/",
            "http://[::ffff:0:7f00:1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[2002:7f00:1::]/",
            "http://[ff02::1]/",
            "http://[fec0::1]/",
            "http://192.0.2.10/",
            "http://168.63.129.16/",
        ] {
            assert!(
                matches!(check(url, &ranges), Err(TargetError::Denied(_))),
                "{url} should be denied"
            );
        }
        for url in [
            "http://localhost/",
            "http://LOCALHOST./",
            "http://metadata.google.internal/",
            "http://printer.local/",
        ] {
            assert!(
                matches!(check(url, &ranges), Err(TargetError::InternalName(_))),
                "{url} should be refused"
            );
        }
        assert!(check("https://hooks.example.com/diarysync", &ranges).is_ok());
        assert!(check("https://93.184.216.34/hook", &ranges).is_ok());
    }

    #[test]
    fn other_schemes_and_credentials_are_refused() {
        let ranges = default_ranges();
        assert_eq!(
            check("file:///etc/passwd", &ranges),
            Err(TargetError::Scheme)
        );
        assert_eq!(
            check("gopher://example.com/", &ranges),
            Err(TargetError::Scheme)
        );
        assert_eq!(
            check("https://user:pw@example.com/", &ranges),
            Err(TargetError::Credentials)
        );
        assert!(matches!(
            check("not a url", &ranges),
            Err(TargetError::Unparsable(_))
        ));
    }

    #[test]
    fn an_allowed_range_opens_a_denied_one() {
        let mut ranges = default_ranges();
        ranges
            .allowed
            .push("127.0.0.1/32".parse().expect("a range"));
        assert!(check("http://127.0.0.1:9/", &ranges).is_ok());
        assert!(check("http://127.0.0.2:9/", &ranges).is_err());
    }
}
