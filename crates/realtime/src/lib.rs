//! Real-time wallet events of creditgate.
//!
//! Every committed wallet change reaches the [`Hub`] of the replica that
//! made it (it is the store's listener); with PostgreSQL, the others hear of
//! it by LISTEN/NOTIFY and read it once each. The hub fans each change out
//! to the subscribers of its user, in version order, through bounded
//! buffers. [`ws::serve`] runs one graphql-transport-ws connection with
//! pings, limits and token expiry.

mod changes;
mod config;
mod hub;
mod limits;
mod pg;
pub mod ws;

pub use config::RealtimeConfig;
pub use hub::{Event, Hub, RealtimeError};
pub use limits::{ConnectionPermit, UserPermit};
pub use pg::LISTEN_APPLICATION_NAME;
