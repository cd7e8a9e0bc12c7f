//! The creditgate server: configuration, identity, HTTP and the command
//! line, over the library crates.

pub mod app;
pub mod auth;
pub mod config;
mod console;
pub mod cors;
mod dev_token;
mod exports;
mod graphql_http;
pub mod housekeeping;
pub mod metrics;
mod openai_compat;
pub mod outbound;
pub mod request_id;
pub mod telemetry;
pub mod webhooks;

pub use app::{App, AppError};
pub use auth::{AuthError, Authenticator, Claims, TokenRequest};
pub use config::Config;
