//! Parsed query documents kept per replica, by their text: a client sends
//! the same few operations over and over (the SPA, the SDKs, `runAi`), and
//! async-graphql's parser (pest) is the largest single cost of a small
//! request's GraphQL work. A document is parsed once and cloned from here
//! afterwards; validation still runs for every request.
//!
//! Only what parsed cleanly is kept, with the checks async-graphql makes
//! while parsing (recursion depth, directives) passed: they depend on the
//! text alone. The guard ([`crate::guard`]) runs before, on every request,
//! cached or not, and so do its checks after parsing (a mutation over GET
//! is refused whether or not its document is cached).

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerResult, Variables};
use quick_cache::sync::Cache;

/// Query text kept at most, in bytes, over all documents (each document
/// takes a few times its text).
const TEXT_CAPACITY: u64 = 1 << 20;
/// Documents expected to fit.
const ESTIMATED_DOCUMENTS: usize = 1_000;
/// A longer query is parsed every time, never kept.
const LONGEST_KEPT: usize = 16 * 1024;

/// Weighs a document by its text.
#[derive(Clone, Copy)]
struct ByText;

impl quick_cache::Weighter<String, ExecutableDocument> for ByText {
    fn weight(&self, key: &String, _: &ExecutableDocument) -> u64 {
        key.len() as u64
    }
}

/// The extension keeping parsed documents.
pub(crate) struct Documents(Arc<Cache<String, ExecutableDocument, ByText>>);

impl Documents {
    pub(crate) fn new() -> Self {
        Documents(Arc::new(Cache::with_weighter(
            ESTIMATED_DOCUMENTS,
            TEXT_CAPACITY,
            ByText,
        )))
    }
}

impl ExtensionFactory for Documents {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(DocumentsExtension(Arc::clone(&self.0)))
    }
}

struct DocumentsExtension(Arc<Cache<String, ExecutableDocument, ByText>>);

#[async_graphql::async_trait::async_trait]
impl Extension for DocumentsExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if let Some(document) = self.0.get(query) {
            return Ok(document);
        }
        let document = next.run(ctx, query, variables).await?;
        if query.len() <= LONGEST_KEPT {
            self.0.insert(query.to_owned(), document.clone());
        }
        Ok(document)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};

    use super::*;

    struct Query;

    #[Object]
    impl Query {
        async fn answer(&self, plus: Option<i32>) -> i32 {
            42 + plus.unwrap_or(0)
        }
    }

    fn schema(documents: &Documents) -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .extension(Documents(Arc::clone(&documents.0)))
            .finish()
    }

    #[tokio::test]
    async fn a_document_is_parsed_once_and_answers_every_request() {
        let documents = Documents::new();
        let schema = schema(&documents);
        let query = "query($p: Int) { answer(plus: $p) }";
        for p in 0..3 {
            let request =
                async_graphql::Request::new(query).variables(Variables::from_json(serde_json::json!({ "p": p })));
            let response = schema.execute(request).await;
            assert!(response.errors.is_empty(), "{:?}", response.errors);
            assert_eq!(
                response.data.into_json().unwrap(),
                serde_json::json!({ "answer": 42 + p })
            );
        }
        assert_eq!(documents.0.len(), 1);
        assert!(documents.0.get(query).is_some());
    }

    #[tokio::test]
    async fn what_fails_to_parse_or_is_too_long_is_not_kept() {
        let documents = Documents::new();
        let schema = schema(&documents);
        let response = schema.execute("{ answer ").await;
        assert_eq!(response.errors.len(), 1);
        let long = format!("{{ answer }}{}", " ".repeat(LONGEST_KEPT));
        let response = schema.execute(long.as_str()).await;
        assert!(response.errors.is_empty(), "{:?}", response.errors);
        assert_eq!(documents.0.len(), 0);
    }
}
