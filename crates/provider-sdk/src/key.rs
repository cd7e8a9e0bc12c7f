//! The key placeholder and the rule that keeps keys where they belong.

use crate::{HttpRequest, KeyPlacement};

/// What a plugin writes where the key goes. The host replaces it with the
/// real key just before sending; the plugin never sees a key.
pub const KEY_PLACEHOLDER: &str = "{{CREDITGATE_PROVIDER_KEY}}";

/// Checks that the placeholder appears exactly where `placement` says and
/// nowhere else (not in the URL, the body or another header).
///
/// Returns the index of the header that carries the key (`None` for
/// [`KeyPlacement::None`]). The error text never contains a key (there is
/// none yet: this runs on the plugin's output).
pub fn check_key_placement(placement: &KeyPlacement, request: &HttpRequest) -> Result<Option<usize>, String> {
    if request.url.contains(KEY_PLACEHOLDER) {
        return Err("the key placeholder is in the URL".to_owned());
    }
    if request.body.as_deref().is_some_and(|b| b.contains(KEY_PLACEHOLDER)) {
        return Err("the key placeholder is in the body".to_owned());
    }
    let (expected_name, expected_value) = match placement {
        KeyPlacement::None => {
            if let Some((name, _)) = request
                .headers
                .iter()
                .find(|(n, v)| n.contains(KEY_PLACEHOLDER) || v.contains(KEY_PLACEHOLDER))
            {
                return Err(format!(
                    "the key placeholder is in header {name:?} but the manifest sends no key"
                ));
            }
            return Ok(None);
        }
        KeyPlacement::Bearer => ("authorization", format!("Bearer {KEY_PLACEHOLDER}")),
        KeyPlacement::Header { name } => (name.as_str(), KEY_PLACEHOLDER.to_owned()),
    };
    let mut found = None;
    for (index, (name, value)) in request.headers.iter().enumerate() {
        if name.contains(KEY_PLACEHOLDER) {
            return Err("the key placeholder is in a header name".to_owned());
        }
        if name.eq_ignore_ascii_case(expected_name) {
            if found.is_some() {
                return Err(format!("header {expected_name:?} is sent twice"));
            }
            if *value != expected_value {
                return Err(format!("header {expected_name:?} must be exactly {expected_value:?}"));
            }
            found = Some(index);
        } else if value.contains(KEY_PLACEHOLDER) {
            return Err(format!(
                "the key placeholder is in header {name:?}, not in {expected_name:?} as the manifest says"
            ));
        }
    }
    match found {
        Some(index) => Ok(Some(index)),
        None => Err(format!(
            "the request has no {expected_name:?} header carrying the key placeholder"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Method;

    fn req() -> HttpRequest {
        HttpRequest::new(Method::Post, "https://api.example.com/v1/x")
    }

    #[test]
    fn bearer_must_be_exact_and_single() {
        let ok = req().header("Authorization", format!("Bearer {KEY_PLACEHOLDER}"));
        assert_eq!(check_key_placement(&KeyPlacement::Bearer, &ok), Ok(Some(0)));
        let missing = req();
        assert!(check_key_placement(&KeyPlacement::Bearer, &missing).is_err());
        let twice = ok.clone().header("authorization", format!("Bearer {KEY_PLACEHOLDER}"));
        assert!(check_key_placement(&KeyPlacement::Bearer, &twice).is_err());
        let elsewhere = ok.clone().header("x-debug", KEY_PLACEHOLDER);
        assert!(check_key_placement(&KeyPlacement::Bearer, &elsewhere).is_err());
        let mut in_body = ok.clone();
        in_body.body = Some(format!("{{\"k\":\"{KEY_PLACEHOLDER}\"}}"));
        assert!(check_key_placement(&KeyPlacement::Bearer, &in_body).is_err());
        let mut in_url = ok;
        in_url.url = format!("https://api.example.com/?key={KEY_PLACEHOLDER}");
        assert!(check_key_placement(&KeyPlacement::Bearer, &in_url).is_err());
    }

    #[test]
    fn header_and_none() {
        let placement = KeyPlacement::Header {
            name: "x-api-key".into(),
        };
        let ok = req()
            .header("x-api-key", KEY_PLACEHOLDER)
            .header("anthropic-version", "2026-10-21");
        assert_eq!(check_key_placement(&placement, &ok), Ok(Some(0)));
        assert!(check_key_placement(&KeyPlacement::None, &ok).is_err());
        assert_eq!(check_key_placement(&KeyPlacement::None, &req()), Ok(None));
    }
}
