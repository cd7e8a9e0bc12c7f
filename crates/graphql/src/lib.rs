//! The GraphQL API of creditgate (async-graphql). The server crate serves
//! it over HTTP and WebSocket; `export-schema` prints its SDL.

mod admins;
mod ai;
mod alerts;
mod context;
mod documents;
mod error;
mod exports;
mod guard;
pub mod metrics;
mod purchases;
mod scalars;
mod schema;
mod subscriptions;
mod types;
mod usage;

use async_graphql::{MergedObject, MergedSubscription, Schema};

pub use context::{ApiLimits, Auth, CallerUser, Services, wallet_user};
pub use error::{ApiError, ApiResult, Code};
pub use exports::{CsvChunk, MAX_BUCKETS, OrgRange, UsageService};
pub use guard::{DocumentError, DocumentLimits, HttpGet, check_document};
pub use scalars::{CreditsScalar, Timestamp};
pub use schema::{WalletMutation, WalletQuery};
pub use subscriptions::WalletSubscription;
pub use usage::Granularity;

/// Every query, one part per capability (each in its own module).
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    WalletQuery,
    ai::AiQuery,
    purchases::PurchaseQuery,
    usage::UsageQuery,
    admins::AdminQuery,
);

/// Every mutation, one part per capability.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    WalletMutation,
    ai::AiMutation,
    purchases::PurchaseMutation,
    alerts::AlertMutation,
    admins::AdminMutation,
);

/// Every subscription, one part per capability.
#[derive(MergedSubscription, Default)]
#[graphql(name = "Subscription")]
pub struct SubscriptionRoot(WalletSubscription, ai::AiSubscription, alerts::AlertSubscription);

pub type ApiSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Automatic persisted queries kept per replica (a miss costs the client
/// one round trip with the full query).
const PERSISTED_QUERIES: usize = 4096;

/// Limits on a query's shape.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    pub depth: usize,
    pub complexity: usize,
    /// Checked on the query text before it is parsed.
    pub document: DocumentLimits,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            depth: 16,
            complexity: 1_000,
            document: DocumentLimits::default(),
        }
    }
}

/// The schema builder, for capabilities to add their own data.
pub type ApiSchemaBuilder = async_graphql::SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot>;

/// The schema, with its services; `extend` adds each capability's own data
/// (`builder.data(x)`), which its resolvers read with `ctx.data::<X>()`.
pub fn build_schema(
    services: Services,
    limits: QueryLimits,
    extend: impl FnOnce(ApiSchemaBuilder) -> ApiSchemaBuilder,
) -> ApiSchema {
    let builder = Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    );
    extend(builder)
        .data(services)
        // Outermost first: the metrics see each response as it leaves.
        .extension(metrics::RequestMetrics)
        .extension(guard::DocumentGuard(limits.document))
        // Inside the guard: its checks run for cached documents too.
        .extension(documents::Documents::new())
        // After the guard: it parses hash-registered queries itself.
        .extension(
            async_graphql::extensions::apollo_persisted_queries::ApolloPersistedQueries::new(
                async_graphql::extensions::apollo_persisted_queries::LruCacheStorage::new(PERSISTED_QUERIES),
            ),
        )
        .extension(error::ErrorCodes)
        .limit_depth(limits.depth)
        .limit_complexity(limits.complexity)
        .finish()
}

/// The SDL of the schema (what `creditgate export-schema` prints and
/// schema.graphql holds).
pub fn sdl() -> String {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
    .finish()
    .sdl_with_options(async_graphql::SDLExportOptions::new().include_specified_by())
}
