//! The checks of one request, body or manifest, each an `Err` saying what
//! is wrong.

use super::{SAMPLE_CAP, SAMPLE_PROMPT, SAMPLE_SYSTEM};
use crate::{ChatRequest, HttpRequest, Manifest, Message, RequestContext, Transport, check_key_placement};

pub(super) fn sample_request(model: &str, stream: bool) -> ChatRequest {
    ChatRequest {
        model: model.to_owned(),
        messages: vec![Message::system(SAMPLE_SYSTEM), Message::user(SAMPLE_PROMPT)],
        max_output_tokens: SAMPLE_CAP,
        stream,
    }
}

pub(super) fn check_manifest(manifest: &Manifest) -> Result<(), String> {
    manifest.validate().map_err(|problems| problems.join("; "))?;
    if manifest.transport == Transport::Http {
        let base = manifest.default_base_url.as_deref().unwrap_or_default();
        let url = url::Url::parse(base).map_err(|e| format!("default base URL {base:?}: {e}"))?;
        if url.scheme() != "https" {
            return Err(format!("default base URL {base:?} is not https"));
        }
        let host = url.host_str().unwrap_or_default();
        if !manifest.allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return Err(format!("default base URL host {host:?} is not an allowed host"));
        }
    }
    Ok(())
}

pub(super) fn check_http_request(manifest: &Manifest, ctx: &RequestContext, req: &HttpRequest) -> Result<(), String> {
    check_key_placement(&manifest.key, req)?;
    for (name, value) in &req.headers {
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !name_ok {
            return Err(format!("invalid header name {name:?}"));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(format!("header {name:?} has a control character"));
        }
        if ["host", "content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            return Err(format!("header {name:?} is set by the host, not the plugin"));
        }
    }
    if let Some(body) = &req.body {
        let content_type = req
            .header_value("content-type")
            .ok_or("a request with a body has no content-type")?;
        if content_type.starts_with("application/json") {
            serde_json::from_str::<serde_json::Value>(body)
                .map_err(|e| format!("the JSON body does not parse: {e}"))?;
        }
    }
    if manifest.transport == Transport::Offline {
        return Ok(());
    }
    let url = url::Url::parse(&req.url).map_err(|e| format!("URL {:?}: {e}", req.url))?;
    if !req.url.starts_with(&ctx.base_url) {
        return Err(format!(
            "URL {:?} is not under the base URL {:?}",
            req.url, ctx.base_url
        ));
    }
    let host = url.host_str().unwrap_or_default();
    let base_host = url::Url::parse(&ctx.base_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned));
    let allowed =
        manifest.allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) || base_host.as_deref() == Some(host);
    if !allowed {
        return Err(format!("URL host {host:?} is not allowed"));
    }
    Ok(())
}

pub(super) fn check_chat_body(req: &HttpRequest, request: &ChatRequest) -> Result<(), String> {
    let body = req.body.as_deref().ok_or("a chat request has no body")?;
    let value: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("the chat body is not JSON: {e}"))?;
    let mut strings = Vec::new();
    let mut numbers = Vec::new();
    collect(&value, &mut strings, &mut numbers);
    if !strings.iter().any(|s| s == &request.model) && !req.url.contains(&request.model) {
        return Err(format!(
            "neither the URL nor the body names the model {:?}",
            request.model
        ));
    }
    for message in &request.messages {
        if !strings.iter().any(|s| s.contains(&message.content)) {
            return Err(format!("the body lacks the message {:?}", message.content));
        }
    }
    if !numbers.contains(&u64::from(request.max_output_tokens)) {
        return Err(format!(
            "the body does not carry the output cap {}",
            request.max_output_tokens
        ));
    }
    Ok(())
}

fn collect(value: &serde_json::Value, strings: &mut Vec<String>, numbers: &mut Vec<u64>) {
    match value {
        serde_json::Value::String(s) => strings.push(s.clone()),
        serde_json::Value::Number(n) => numbers.extend(n.as_u64()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, strings, numbers)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect(v, strings, numbers)),
        _ => {}
    }
}
