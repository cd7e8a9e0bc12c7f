//! The closed vocabularies of the ledger, with their stored spellings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A stored value that is not one of the enum's spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a known {what}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

macro_rules! stored_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue { what: $what, value: s.to_owned() }),
                }
            }
        }
    };
}

stored_enum!(
    /// What a journal entry records.
    ActivityKind, "activity kind" {
        AiUsage => "AI_USAGE",
        MonthlyAllocation => "MONTHLY_ALLOCATION",
        MonthlyExpiry => "MONTHLY_EXPIRY",
        Purchase => "PURCHASE",
        Grant => "GRANT",
        Refund => "REFUND",
        Adjustment => "ADJUSTMENT",
    }
);

stored_enum!(
    /// The AI capabilities that consume credits.
    AiFeature, "AI feature" {
        Chat => "CHAT",
        ExecutiveAnalysis => "EXECUTIVE_ANALYSIS",
        StandupSynthesis => "STANDUP_SYNTHESIS",
        AutoScheduling => "AUTO_SCHEDULING",
    }
);

stored_enum!(
    /// How an AI request is paid for.
    BillingMode, "billing mode" {
        Credits => "CREDITS",
        Byok => "BYOK",
    }
);

stored_enum!(
    /// How an AI request ended.
    AiRequestStatus, "AI request status" {
        Succeeded => "SUCCEEDED",
        Failed => "FAILED",
        Cancelled => "CANCELLED",
    }
);

stored_enum!(
    /// Who a caller is.
    Role, "role" {
        Member => "member",
        Admin => "admin",
        Service => "service",
    }
);

stored_enum!(
    /// Where a hold stands. A hold leaves `Open` exactly once.
    HoldStatus, "hold status" {
        Open => "OPEN",
        Settled => "SETTLED",
        Released => "RELEASED",
        Expired => "EXPIRED",
    }
);

stored_enum!(
    /// What a balance alert says about `available` and its threshold.
    AlertKind, "balance alert kind" {
        Low => "LOW",
        Depleted => "DEPLETED",
        Recovered => "RECOVERED",
    }
);
