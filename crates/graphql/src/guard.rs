//! The guard in front of the GraphQL parser: a query document is read once,
//! flat and without recursion, and refused with BAD_USER_INPUT when its
//! brackets nest deeper than the limit, or when it defines more fragments
//! than the limit, before any recursive parser or validator sees it.
//!
//! async-graphql's parser recurses once (and pest several times) per level
//! of `[`, `{` and `(`: a 3 KB list literal nested 1,500 levels deep
//! overflowed a worker's stack and aborted the process. Selection sets are
//! depth-limited by the parser itself, but list and input-object literals,
//! and chains of fragment spreads (which the validator follows depth
//! first), are not. Every GraphQL entry point (HTTP POST and GET, batches,
//! WebSocket subscriptions) parses through the schema's extensions, so this
//! one check covers them all. JSON (bodies, variables, WebSocket messages)
//! is parsed by serde_json, whose own recursion limit (128) refuses deeper
//! documents before they are built.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextValidation,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{Request, ServerError, ServerResult, ValidationResult, Variables};

use crate::error::Code;

/// How deep a document may nest `[`, `{` and `(` (selection sets, list and
/// object literals, arguments and variable types together), and how many
/// fragments it may define.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentLimits {
    pub nesting: usize,
    pub fragments: usize,
}

impl Default for DocumentLimits {
    fn default() -> Self {
        // The standard introspection query nests 14 deep and defines 3 fragments.
        DocumentLimits {
            nesting: 64,
            fragments: 100,
        }
    }
}

/// Why a document was refused before parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("the query nests brackets more than {limit} levels deep")]
    TooDeep { limit: usize },
    #[error("the query defines more than {limit} fragments")]
    TooManyFragments { limit: usize },
    #[error("text in a request must not contain the character U+0000")]
    Nul,
}

/// Reads `query` as GraphQL tokens (strings, block strings and comments are
/// skipped as such) and checks it against `limits`. Runs in constant stack
/// and linear time; it decides nothing about validity, the parser does.
pub fn check_document(query: &str, limits: DocumentLimits) -> Result<(), DocumentError> {
    let bytes = query.as_bytes();
    let mut depth = 0usize;
    let mut fragments = 0usize;
    let mut i = 0;
    if bytes.contains(&0) {
        return Err(DocumentError::Nul);
    }
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i = skip_block_string(bytes, i + 3);
                continue;
            }
            b'"' => {
                i = skip_string(bytes, i + 1)?;
                continue;
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > limits.nesting {
                    return Err(DocumentError::TooDeep { limit: limits.nesting });
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            c if is_name_start(c) => {
                let start = i;
                while i < bytes.len() && is_name_continue(bytes[i]) {
                    i += 1;
                }
                if depth == 0 && &bytes[start..i] == b"fragment" {
                    fragments += 1;
                    if fragments > limits.fragments {
                        return Err(DocumentError::TooManyFragments {
                            limit: limits.fragments,
                        });
                    }
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

fn is_name_start(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphabetic()
}

fn is_name_continue(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric()
}

/// The index after the closing `"` of a string whose body starts at `i`
/// (or the end: an unterminated string is the parser's to report). A
/// `\u0000` escape is refused.
fn skip_string(bytes: &[u8], mut i: usize) -> Result<usize, DocumentError> {
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if bytes[i + 1..].starts_with(b"u0000") => return Err(DocumentError::Nul),
            b'\\' => i += 2,
            b'"' => return Ok(i + 1),
            b'\n' | b'\r' => return Ok(i),
            _ => i += 1,
        }
    }
    Ok(bytes.len())
}

/// Refuses variables holding U+0000 in any string or object key. Walks
/// with a stack of its own, so no depth of variables can exhaust the
/// thread's stack (serde_json refuses documents nested past 128 anyway).
pub fn check_variables(variables: &Variables) -> Result<(), DocumentError> {
    use async_graphql::Value;
    let mut stack: Vec<&Value> = Vec::new();
    for (name, value) in variables.iter() {
        if name.contains('\0') {
            return Err(DocumentError::Nul);
        }
        stack.push(value);
    }
    while let Some(value) = stack.pop() {
        match value {
            Value::String(s) if s.contains('\0') => return Err(DocumentError::Nul),
            Value::Enum(name) if name.as_str().contains('\0') => return Err(DocumentError::Nul),
            Value::List(items) => stack.extend(items.iter()),
            Value::Object(map) => {
                for (key, item) in map {
                    if key.contains('\0') {
                        return Err(DocumentError::Nul);
                    }
                    stack.push(item);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The index after the closing `"""` of a block string whose body starts at
/// `i`; `\"""` inside it is an escaped delimiter.
fn skip_block_string(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() {
        if bytes[i..].starts_with(b"\\\"\"\"") {
            i += 4;
        } else if bytes[i..].starts_with(b"\"\"\"") {
            return i + 3;
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// Request data marking a request that came as `GET /graphql`: it may run
/// queries only (GraphQL over HTTP), since a GET must change nothing.
#[derive(Debug, Clone, Copy)]
pub struct HttpGet;

fn bad_input(message: String) -> ServerError {
    let mut error = ServerError::new(message, None);
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", Code::BadUserInput.as_str());
    error
}

/// The extension that runs [`check_document`] before the parser.
pub(crate) struct DocumentGuard(pub DocumentLimits);

impl ExtensionFactory for DocumentGuard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(DocumentGuardExtension(self.0))
    }
}

struct DocumentGuardExtension(DocumentLimits);

#[async_graphql::async_trait::async_trait]
impl Extension for DocumentGuardExtension {
    /// Before anything parses the query (the persisted-query extension
    /// parses in this step too, so the guard is registered ahead of it).
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        check_document(&request.query, self.0).map_err(|e| bad_input(e.to_string()))?;
        check_variables(&request.variables).map_err(|e| bad_input(e.to_string()))?;
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await.map_err(|mut e| {
            set_code(&mut e, Code::GraphqlParseFailed);
            e
        })?;
        if ctx.data_opt::<HttpGet>().is_some()
            && document
                .operations
                .iter()
                .any(|(_, op)| op.node.ty != OperationType::Query)
        {
            return Err(bad_input(
                "GET runs queries only; send mutations and subscriptions with POST".into(),
            ));
        }
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|mut errors| {
            for e in &mut errors {
                // A value that does not fit its argument's type is the
                // user's input (as Apollo's servers say); the rest is the
                // operation not fitting the schema.
                let code = if e.message.starts_with("Invalid value for argument") {
                    Code::BadUserInput
                } else {
                    Code::GraphqlValidationFailed
                };
                set_code(e, code);
            }
            errors
        })
    }
}

/// Sets an error's code unless it has one.
fn set_code(e: &mut ServerError, code: Code) {
    let ext = e.extensions.get_or_insert_with(Default::default);
    if ext.get("code").is_none() {
        ext.set("code", code.as_str());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const LIMITS: DocumentLimits = DocumentLimits {
        nesting: 8,
        fragments: 2,
    };

    #[test]
    fn nesting_is_counted_across_every_bracket() {
        assert_eq!(check_document("{ a { b(x: [[1]]) } }", LIMITS), Ok(()));
        let deep = format!("{{ me(x: {}1{}) {{ id }} }}", "[".repeat(8), "]".repeat(8));
        assert_eq!(check_document(&deep, LIMITS), Err(DocumentError::TooDeep { limit: 8 }));
        let objects = format!("{{ me(x: {}1{}) }}", "{a: ".repeat(7), "}".repeat(7));
        assert_eq!(
            check_document(&objects, LIMITS),
            Err(DocumentError::TooDeep { limit: 8 })
        );
        // Unbalanced closers never underflow into a pass for what follows.
        let tricky = format!("}}}}}}{{ me(x: {}) }}", "[".repeat(9));
        assert!(check_document(&tricky, LIMITS).is_err());
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_count() {
        let s = format!(
            "{{ a(x: \"{}\", y: \"\\\"[[\") # {}\n b(z: \"\"\"{} \\\"\"\" [[[[[[\"\"\") }}",
            "[".repeat(100),
            "{".repeat(100),
            "(".repeat(100)
        );
        assert_eq!(check_document(&s, LIMITS), Ok(()));
        // After the string ends, brackets count again.
        let s = format!("{{ a(x: \"]]]]\") {} }}", "[".repeat(10));
        assert!(check_document(&s, LIMITS).is_err());
    }

    #[test]
    fn fragments_are_counted_at_the_top_level_only() {
        let two = "query { ...A } fragment A on Query { ...B } fragment B on Query { me { id } }";
        assert_eq!(check_document(two, LIMITS), Ok(()));
        let three = format!("{two} fragment C on Query {{ me {{ id }} }}");
        assert_eq!(
            check_document(&three, LIMITS),
            Err(DocumentError::TooManyFragments { limit: 2 })
        );
        // A field called `fragment` is not a definition.
        let field = "{ fragment fragment fragment { id } }";
        assert_eq!(check_document(field, LIMITS), Ok(()));
        // Nor is a name that merely starts with it.
        assert_eq!(check_document("fragments fragmentX { a }", LIMITS), Ok(()));
    }

    #[test]
    fn the_introspection_query_passes_the_default_limits() {
        let q = include_str!("../tests/fixtures/introspection.graphql");
        assert_eq!(check_document(q, DocumentLimits::default()), Ok(()));
    }
}
