//! Counts GraphQL requests by operation name and outcome (the
//! `extensions.code` of the first error, or `OK`) through the `metrics`
//! facade: nothing is recorded unless the server installs a recorder.
//!
//! Operation names come from clients, so the label is bounded: a name is
//! kept only when it is a plain GraphQL name of at most 64 characters and
//! one of the first [`MAX_OPERATION_NAMES`] seen; anything else counts as
//! `other`. Requests without a name count as `anonymous`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextRequest,
};
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument};
use async_graphql::{Request, Response, ServerResult, Variables};

/// Requests, by `operation` and `code`.
pub const REQUESTS: &str = "creditgate_requests_total";
/// The most distinct operation names kept as labels.
pub const MAX_OPERATION_NAMES: usize = 256;

static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// The `operation` label for a client-given name.
pub fn operation_label(name: Option<&str>) -> String {
    let Some(name) = name else {
        return "anonymous".to_owned();
    };
    let plain = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if !plain {
        return "other".to_owned();
    }
    let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    let seen = seen.get_or_insert_with(HashSet::new);
    if seen.contains(name) || seen.len() < MAX_OPERATION_NAMES {
        seen.insert(name.to_owned());
        name.to_owned()
    } else {
        "other".to_owned()
    }
}

/// The async-graphql extension that counts requests.
pub(crate) struct RequestMetrics;

impl ExtensionFactory for RequestMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RequestMetricsExtension::default())
    }
}

#[derive(Default)]
struct RequestMetricsExtension {
    /// The operation's name, once the query is parsed.
    operation: Mutex<Option<String>>,
}

#[async_graphql::async_trait::async_trait]
impl Extension for RequestMetricsExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let resp = next.run(ctx).await;
        let name = self.operation.lock().unwrap_or_else(PoisonError::into_inner).take();
        let code = match resp.errors.first() {
            None => "OK".to_owned(),
            Some(e) => match e.extensions.as_ref().and_then(|x| x.get("code")) {
                Some(async_graphql::Value::String(code)) => code.clone(),
                _ => "UNKNOWN".to_owned(),
            },
        };
        metrics::counter!(REQUESTS, "operation" => operation_label(name.as_deref()), "code" => code).increment(1);
        resp
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Some(name) = &request.operation_name {
            *self.operation.lock().unwrap_or_else(PoisonError::into_inner) = Some(name.clone());
        }
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let mut operation = self.operation.lock().unwrap_or_else(PoisonError::into_inner);
        if operation.is_none()
            && let DocumentOperations::Multiple(ops) = &doc.operations
            && ops.len() == 1
            && let Some(name) = ops.keys().next()
        {
            *operation = Some(name.to_string());
        }
        drop(operation);
        Ok(doc)
    }
}
