//! Which provider and which key serve a request. Pure.

use creditgate_domain::BillingMode;

/// What routing knows about a request and its user.
#[derive(Debug, Clone, Copy)]
pub struct RouteInput<'a> {
    /// The feature's default provider.
    pub default_provider: &'a str,
    /// The provider the request names, if any.
    pub provider: Option<&'a str>,
    /// The model the request names, if any.
    pub model: Option<&'a str>,
    /// The providers the user has a key for.
    pub user_keys: &'a [String],
    /// The user's preferred key's provider, if set.
    pub preferred: Option<&'a str>,
}

/// The decision: a provider, a model (or its default) and who pays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub provider: String,
    pub model: Option<String>,
    pub mode: BillingMode,
}

/// A request goes through the user's key when they have one for the
/// provider that serves it (the one it names, else the feature's default).
/// With keys for other providers only and nothing named, the preferred
/// key's provider (else the first) serves it with its default model.
/// Otherwise credits pay, through the platform's key.
pub fn route(input: RouteInput<'_>) -> Route {
    let has_key = |p: &str| input.user_keys.iter().any(|k| k == p);
    let mode_for = |p: &str| {
        if has_key(p) {
            BillingMode::Byok
        } else {
            BillingMode::Credits
        }
    };
    if let Some(p) = input.provider {
        return Route {
            provider: p.to_owned(),
            model: input.model.map(str::to_owned),
            mode: mode_for(p),
        };
    }
    if input.model.is_some() || has_key(input.default_provider) || input.user_keys.is_empty() {
        return Route {
            provider: input.default_provider.to_owned(),
            model: input.model.map(str::to_owned),
            mode: mode_for(input.default_provider),
        };
    }
    let chosen = input.preferred.filter(|p| has_key(p)).unwrap_or(&input.user_keys[0]);
    Route {
        provider: chosen.to_owned(),
        model: None,
        mode: BillingMode::Byok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn routes() {
        let none = keys(&[]);
        let openai = keys(&["openai"]);
        let both = keys(&["anthropic", "openai"]);
        let base = RouteInput {
            default_provider: "openai",
            provider: None,
            model: None,
            user_keys: &none,
            preferred: None,
        };
        assert_eq!(route(base).mode, BillingMode::Credits);
        let r = route(RouteInput {
            user_keys: &openai,
            ..base
        });
        assert_eq!((r.provider.as_str(), r.mode), ("openai", BillingMode::Byok));
        let r = route(RouteInput {
            default_provider: "demo",
            user_keys: &both,
            preferred: Some("openai"),
            ..base
        });
        assert_eq!(
            (r.provider.as_str(), r.model, r.mode),
            ("openai", None, BillingMode::Byok)
        );
        let r = route(RouteInput {
            default_provider: "demo",
            user_keys: &both,
            ..base
        });
        assert_eq!(r.provider, "anthropic");
        let r = route(RouteInput {
            provider: Some("demo"),
            user_keys: &both,
            ..base
        });
        assert_eq!((r.provider.as_str(), r.mode), ("demo", BillingMode::Credits));
    }
}
