//! Where a provider's requests (and its key) may go: the operator decides.
//!
//! A request may go to the exact origin (scheme, host, port) of the
//! provider's base URL (configured, else the plugin's default), or over
//! HTTPS on port 443 to a host the operator lists (`allowed_hosts`). The
//! hosts a plugin's manifest lists count only when the operator sets
//! `allow_plugin_hosts`; they are shown at load either way. The check runs
//! before the key is injected, so a request to any other host is refused
//! without ever carrying a key.

use creditgate_provider_sdk::{Manifest, is_valid_host_name};

/// An origin: scheme, lowercase host and port (the scheme's default when
/// the URL has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) scheme: String,
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
}

impl Origin {
    pub(crate) fn of(url: &url::Url) -> Self {
        Self {
            scheme: url.scheme().to_owned(),
            host: url.host_str().unwrap_or_default().to_ascii_lowercase(),
            port: url.port_or_known_default(),
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// The hosts one provider may reach.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostPolicy {
    /// The base URL's origin (none for an offline plugin).
    pub(crate) base: Option<Origin>,
    /// Further hosts, over HTTPS on port 443, lowercase.
    pub(crate) https_hosts: Vec<String>,
}

impl HostPolicy {
    /// The policy for a provider: the base URL's origin, the operator's
    /// hosts and, when the operator allows it, the plugin's.
    pub(crate) fn new(
        provider: &str,
        base: Option<&url::Url>,
        operator_hosts: &[String],
        manifest: &Manifest,
        allow_plugin_hosts: bool,
    ) -> Result<Self, String> {
        let mut https_hosts = Vec::new();
        for host in operator_hosts {
            if !is_valid_host_name(host) {
                return Err(format!(
                    "provider {provider}: allowed host {host:?} is not a plain host name (no scheme, port or path)"
                ));
            }
            https_hosts.push(host.to_ascii_lowercase());
        }
        if allow_plugin_hosts {
            https_hosts.extend(manifest.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()));
        }
        https_hosts.sort();
        https_hosts.dedup();
        Ok(Self {
            base: base.map(Origin::of),
            https_hosts,
        })
    }

    /// Whether a request may go to `url`.
    pub(crate) fn allows(&self, url: &url::Url) -> bool {
        let origin = Origin::of(url);
        if self.base.as_ref() == Some(&origin) {
            return true;
        }
        origin.scheme == "https" && origin.port == Some(443) && self.https_hosts.contains(&origin.host)
    }

    /// The manifest's hosts the operator has not allowed (for the load log).
    pub(crate) fn unused_plugin_hosts(&self, manifest: &Manifest) -> Vec<String> {
        manifest
            .allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .filter(|h| !self.https_hosts.contains(h) && self.base.as_ref().is_none_or(|b| b.host != *h))
            .collect()
    }

    /// Every origin allowed, for the load log.
    pub(crate) fn describe(&self) -> Vec<String> {
        self.base
            .iter()
            .map(ToString::to_string)
            .chain(self.https_hosts.iter().map(|h| format!("https://{h}:443")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    fn manifest() -> Manifest {
        Manifest::new("p", "P", "1")
            .allowed_host("api.p.example")
            .allowed_host("exfil.example")
    }

    #[test]
    fn the_base_url_origin_only_by_default() {
        let base = url("http://127.0.0.1:8080/v1");
        let policy = HostPolicy::new("p", Some(&base), &[], &manifest(), false).unwrap();
        assert!(policy.allows(&url("http://127.0.0.1:8080/v1/chat")));
        assert!(!policy.allows(&url("http://127.0.0.1:8081/v1/chat")), "another port");
        assert!(
            !policy.allows(&url("http://localhost:8080/v1/chat")),
            "another host name"
        );
        assert!(!policy.allows(&url("https://exfil.example/collect")), "a manifest host");
        assert_eq!(
            policy.unused_plugin_hosts(&manifest()),
            ["api.p.example", "exfil.example"]
        );
    }

    #[test]
    fn the_operator_adds_hosts_or_allows_the_plugins() {
        let base = url("https://api.p.example/v1");
        let operator = vec!["Upload.P.example".to_owned()];
        let policy = HostPolicy::new("p", Some(&base), &operator, &manifest(), false).unwrap();
        assert!(policy.allows(&url("https://api.p.example/v1/x")));
        assert!(policy.allows(&url("https://upload.p.example/x")));
        assert!(!policy.allows(&url("http://upload.p.example/x")), "HTTPS only");
        assert!(!policy.allows(&url("https://upload.p.example:8443/x")), "port 443 only");
        assert!(!policy.allows(&url("https://exfil.example/x")));
        assert_eq!(policy.unused_plugin_hosts(&manifest()), ["exfil.example"]);
        let trusting = HostPolicy::new("p", Some(&base), &[], &manifest(), true).unwrap();
        assert!(trusting.allows(&url("https://exfil.example/x")));
        assert!(HostPolicy::new("p", Some(&base), &["https://x.example".to_owned()], &manifest(), false).is_err());
    }
}
