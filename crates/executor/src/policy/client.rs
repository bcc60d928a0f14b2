//! The HTTP clients of request nodes, built so that the rules hold at every
//! step: each URL's host (the first and every redirect hop) is checked before
//! it is sent to, names resolve only to allowed addresses, and the address a
//! response came from is checked once more. No proxy is taken from the
//! environment; `--request-proxy` sets one on purpose.

use super::{HostRules, Refused};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Most redirects a request follows.
pub const MAX_REDIRECTS: usize = 5;

/// A request followed more than [`MAX_REDIRECTS`] redirects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("more than {MAX_REDIRECTS} redirects")]
pub struct TooManyRedirects;

/// A request that sends credentials was redirected to another origin: not
/// followed, so that the credentials stay with the origin they were meant for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "redirected to another origin ({to}); not followed because the request sends credentials \
     (a secret-bearing header, a secret in its body or user info in its URL): point the node at the final URL"
)]
pub struct CrossOriginRedirect {
    /// The origin redirected to: `scheme://host:port`, nothing else of the URL.
    pub to: String,
}

/// A URL's origin: scheme, host and port (the known default when unsaid).
fn origin(url: &reqwest::Url) -> (String, String, Option<u16>) {
    (
        url.scheme().to_string(),
        url.host_str().unwrap_or_default().to_ascii_lowercase(),
        url.port_or_known_default(),
    )
}

/// The proxy every request node goes through (`--request-proxy`). Shown (in
/// logs, `Debug`) without its user info.
#[derive(Clone, PartialEq)]
pub struct RequestProxy {
    url: reqwest::Url,
}

impl RequestProxy {
    /// Parses an `http://` or `https://` proxy URL (user info allowed: it is
    /// sent as `Proxy-Authorization`). Errors never repeat the URL's secrets.
    pub fn parse(text: &str) -> Result<RequestProxy, String> {
        let url = reqwest::Url::parse(text.trim())
            .map_err(|e| format!("the request proxy is not a URL ({e})"))?;
        let proxy = RequestProxy { url };
        if !matches!(proxy.url.scheme(), "http" | "https") || proxy.url.host_str().is_none() {
            return Err(format!(
                "the request proxy `{proxy}` must be an http:// or https:// URL with a host"
            ));
        }
        if proxy.url.query().is_some() || !matches!(proxy.url.path(), "" | "/") {
            return Err(format!(
                "the request proxy `{proxy}` must have no path or query"
            ));
        }
        Ok(proxy)
    }
}

impl fmt::Display for RequestProxy {
    /// `scheme://host:port`, never the user info.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}",
            self.url.scheme(),
            self.url.host_str().unwrap_or_default()
        )?;
        if let Some(port) = self.url.port() {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for RequestProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestProxy({self})")
    }
}

/// How request nodes reach other systems: the rules and three clients (one
/// following redirects, one following them within the first URL's origin
/// only — for requests that send credentials —, one not following), which
/// share the rules.
pub struct Outbound {
    rules: Arc<HostRules>,
    follow: reqwest::Client,
    follow_same_origin: reqwest::Client,
    no_follow: reqwest::Client,
    proxied: bool,
}

impl Outbound {
    /// Clients applying `rules`, direct or through `proxy`.
    pub fn new(rules: HostRules, proxy: Option<&RequestProxy>) -> Result<Outbound, String> {
        let rules = Arc::new(rules);
        let proxied = proxy.is_some();
        let follow = build(&rules, proxy, follow_policy(rules.clone(), proxied, false))?;
        let follow_same_origin = build(&rules, proxy, follow_policy(rules.clone(), proxied, true))?;
        let no_follow = build(&rules, proxy, reqwest::redirect::Policy::none())?;
        if let Some(proxy) = proxy {
            tracing::info!(message = "Request nodes go through a proxy.", proxy = %proxy);
        }
        Ok(Outbound {
            rules,
            follow,
            follow_same_origin,
            no_follow,
            proxied,
        })
    }

    /// The client to send with: `credentials` when the request sends a
    /// secret-bearing header, whose redirects are then followed within the
    /// first URL's origin only (the HTTP client drops `Authorization` and
    /// `Cookie` at another host, but not a custom header such as `X-Api-Key`).
    pub fn client(&self, follow_redirects: bool, credentials: bool) -> &reqwest::Client {
        match (follow_redirects, credentials) {
            (false, _) => &self.no_follow,
            (true, false) => &self.follow,
            (true, true) => &self.follow_same_origin,
        }
    }

    /// Checks a URL's host before sending to it. Through a proxy, which
    /// resolves names itself, names are judged by name alone.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Refused> {
        self.rules.check_url(url, self.proxied)
    }

    /// Checks the address a response came from (defence in depth: the
    /// resolver and [`Outbound::check_url`] already refused bad ones).
    /// Through a proxy that address is the proxy's, so there is nothing to check.
    pub fn check_peer(&self, url: &reqwest::Url, peer: Option<SocketAddr>) -> Result<(), Refused> {
        match peer {
            Some(addr) if !self.proxied => self
                .rules
                .check_ip(url.host_str().unwrap_or_default(), addr.ip()),
            _ => Ok(()),
        }
    }
}

fn build(
    rules: &Arc<HostRules>,
    proxy: Option<&RequestProxy>,
    redirect: reqwest::redirect::Policy,
) -> Result<reqwest::Client, String> {
    let builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("hookflow/", env!("CARGO_PKG_VERSION")))
        .redirect(redirect)
        // A Referer would carry the previous URL's query string to the next hop.
        .referer(false)
        // Nothing from HTTP_PROXY, HTTPS_PROXY, ALL_PROXY.
        .no_proxy();
    let builder = match proxy {
        Some(proxy) => builder.proxy(
            reqwest::Proxy::all(proxy.url.clone())
                .map_err(|_| format!("the request proxy `{proxy}` cannot be used"))?,
        ),
        // Through a proxy the client resolves only the proxy's own name,
        // which the operator chose; directly, every name is resolved here.
        None => builder.dns_resolver(Arc::new(PolicyResolver(rules.clone()))),
    };
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Follows at most [`MAX_REDIRECTS`] redirects, each hop checked like the
/// first; with `same_origin`, only hops within the first URL's origin.
fn follow_policy(
    rules: Arc<HostRules>,
    proxied: bool,
    same_origin: bool,
) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        // `previous` holds the first URL and every hop followed so far.
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(TooManyRedirects);
        }
        if same_origin {
            let first = attempt.previous().first().map(origin);
            let next = origin(attempt.url());
            if first.as_ref() != Some(&next) {
                let (scheme, host, port) = next;
                let to = match port {
                    Some(port) => format!("{scheme}://{host}:{port}"),
                    None => format!("{scheme}://{host}"),
                };
                return attempt.error(CrossOriginRedirect { to });
            }
        }
        match rules.check_url(attempt.url(), proxied) {
            Ok(()) => attempt.follow(),
            Err(refused) => attempt.error(refused.at_redirect()),
        }
    })
}

/// A DNS resolver that drops addresses the rules do not allow; when none is
/// left, it fails with the first address's refusal.
struct PolicyResolver(Arc<HostRules>);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let rules = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            rules.check_name(&host, false)?;
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut allowed = Vec::with_capacity(addrs.len());
            let mut first_refusal = None;
            for addr in addrs {
                match rules.check_ip(&host, addr.ip()) {
                    Ok(()) => allowed.push(addr),
                    Err(refused) => {
                        first_refusal.get_or_insert(refused);
                    }
                }
            }
            match (allowed.is_empty(), first_refusal) {
                (true, Some(refused)) => Err(refused.into()),
                _ => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}
