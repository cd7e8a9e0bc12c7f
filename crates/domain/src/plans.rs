//! Plans: how many monthly credits each member of an organization gets.

use serde::{Deserialize, Serialize};

use crate::credits::Credits;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub id: String,
    pub name: String,
    pub monthly_credits_per_user: Credits,
}

/// The plans an organization can be on, and the one new organizations start on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanCatalog {
    plans: Vec<Plan>,
    default_plan: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanCatalogError {
    #[error("there must be at least one plan")]
    Empty,
    #[error("plan id `{0}` is used twice")]
    Duplicate(String),
    #[error("the default plan `{0}` is not one of the plans")]
    UnknownDefault(String),
    #[error("plan `{0}` gives a negative monthly allocation")]
    Negative(String),
    #[error("plan id must not be empty")]
    EmptyId,
}

impl PlanCatalog {
    pub fn new(plans: Vec<Plan>, default_plan: impl Into<String>) -> Result<Self, PlanCatalogError> {
        let default_plan = default_plan.into();
        if plans.is_empty() {
            return Err(PlanCatalogError::Empty);
        }
        for (i, p) in plans.iter().enumerate() {
            if p.id.trim().is_empty() {
                return Err(PlanCatalogError::EmptyId);
            }
            if p.monthly_credits_per_user.is_negative() {
                return Err(PlanCatalogError::Negative(p.id.clone()));
            }
            if plans[..i].iter().any(|q| q.id == p.id) {
                return Err(PlanCatalogError::Duplicate(p.id.clone()));
            }
        }
        if !plans.iter().any(|p| p.id == default_plan) {
            return Err(PlanCatalogError::UnknownDefault(default_plan));
        }
        Ok(PlanCatalog { plans, default_plan })
    }

    pub fn all(&self) -> &[Plan] {
        &self.plans
    }

    pub fn get(&self, id: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.id == id)
    }

    pub fn default_plan(&self) -> &Plan {
        // `new` proved the default is in the list.
        self.get(&self.default_plan).unwrap_or(&self.plans[0])
    }

    /// The shipped plans: enough to try the product out of the box.
    pub fn shipped() -> Self {
        let plan = |id: &str, name: &str, credits: i64| Plan {
            id: id.to_owned(),
            name: name.to_owned(),
            monthly_credits_per_user: Credits::from_millis(credits * 1_000),
        };
        PlanCatalog {
            plans: vec![
                plan("free", "Free", 100),
                plan("team", "Team", 1_000),
                plan("business", "Business", 5_000),
            ],
            default_plan: "free".to_owned(),
        }
    }
}
