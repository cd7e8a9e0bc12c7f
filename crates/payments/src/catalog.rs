//! Credit packs: what a user can buy, from configuration.

use creditgate_domain::Credits;
use serde::{Deserialize, Serialize};

/// A pack of permanent credits for sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditPack {
    pub id: String,
    pub name: String,
    /// The permanent credits the pack adds.
    pub credits: Credits,
    /// The price, in the smallest unit of `currency` (cents).
    pub price_cents: i64,
    /// ISO 4217 code, e.g. `USD`; shown upper case.
    pub currency: String,
    /// Only active packs are offered and can be bought.
    #[serde(default = "active_by_default")]
    pub active: bool,
}

fn active_by_default() -> bool {
    true
}

/// Why a pack list is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("a credit pack id must not be empty")]
    EmptyId,
    #[error("credit pack id `{0}` is used twice")]
    Duplicate(String),
    #[error("credit pack `{0}` must have a name")]
    EmptyName(String),
    #[error("credit pack `{0}` must add a positive amount of credits")]
    NonPositiveCredits(String),
    #[error("credit pack `{0}`: price_cents must be between 1 and 2147483647")]
    NonPositivePrice(String),
    #[error("credit pack `{id}`: currency `{currency}` is not a three-letter ISO 4217 code")]
    Currency { id: String, currency: String },
}

/// The configured packs, validated; currencies normalised to upper case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackCatalog {
    packs: Vec<CreditPack>,
}

impl PackCatalog {
    pub fn new(packs: Vec<CreditPack>) -> Result<Self, CatalogError> {
        let mut checked: Vec<CreditPack> = Vec::with_capacity(packs.len());
        for mut p in packs {
            if p.id.trim().is_empty() || p.id.len() > 100 {
                return Err(CatalogError::EmptyId);
            }
            if checked.iter().any(|q| q.id == p.id) {
                return Err(CatalogError::Duplicate(p.id));
            }
            if p.name.trim().is_empty() {
                return Err(CatalogError::EmptyName(p.id));
            }
            if !p.credits.is_positive() {
                return Err(CatalogError::NonPositiveCredits(p.id));
            }
            if p.price_cents <= 0 || p.price_cents > i64::from(i32::MAX) {
                return Err(CatalogError::NonPositivePrice(p.id));
            }
            if p.currency.len() != 3 || !p.currency.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(CatalogError::Currency {
                    id: p.id,
                    currency: p.currency,
                });
            }
            p.currency = p.currency.to_ascii_uppercase();
            checked.push(p);
        }
        Ok(PackCatalog { packs: checked })
    }

    /// The packs creditgate ships with.
    pub fn shipped_packs() -> Vec<CreditPack> {
        let pack = |id: &str, name: &str, credits: i64, price_cents: i64| CreditPack {
            id: id.to_owned(),
            name: name.to_owned(),
            credits: Credits::from_millis(credits * 1_000),
            price_cents,
            currency: "USD".to_owned(),
            active: true,
        };
        vec![
            pack("starter", "Starter", 500, 500),
            pack("plus", "Plus", 2_500, 2_000),
            pack("pro", "Pro", 10_000, 7_000),
        ]
    }

    /// Every configured pack, active or not (purchases of retired packs
    /// still name them).
    pub fn all(&self) -> &[CreditPack] {
        &self.packs
    }

    /// The packs on sale, in configuration order.
    pub fn active(&self) -> impl Iterator<Item = &CreditPack> {
        self.packs.iter().filter(|p| p.active)
    }

    /// A pack on sale.
    pub fn active_pack(&self, id: &str) -> Option<&CreditPack> {
        self.packs.iter().find(|p| p.active && p.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_packs_are_valid_and_active() {
        let c = PackCatalog::new(PackCatalog::shipped_packs()).unwrap();
        assert_eq!(c.active().count(), 3);
        assert_eq!(c.active_pack("starter").unwrap().credits.to_string(), "500");
    }

    #[test]
    fn bad_packs_are_refused() {
        let good = PackCatalog::shipped_packs().remove(0);
        let with = |f: &dyn Fn(&mut CreditPack)| {
            let mut p = good.clone();
            f(&mut p);
            PackCatalog::new(vec![p])
        };
        assert!(matches!(with(&|p| p.id = " ".into()), Err(CatalogError::EmptyId)));
        assert!(matches!(
            with(&|p| p.credits = Credits::ZERO),
            Err(CatalogError::NonPositiveCredits(_))
        ));
        assert!(matches!(
            with(&|p| p.price_cents = 0),
            Err(CatalogError::NonPositivePrice(_))
        ));
        assert!(matches!(
            with(&|p| p.currency = "US".into()),
            Err(CatalogError::Currency { .. })
        ));
        assert_eq!(with(&|p| p.currency = "eur".into()).unwrap().all()[0].currency, "EUR");
        assert!(matches!(
            PackCatalog::new(vec![good.clone(), good.clone()]),
            Err(CatalogError::Duplicate(_))
        ));
    }

    #[test]
    fn inactive_packs_are_not_on_sale() {
        let mut packs = PackCatalog::shipped_packs();
        packs[1].active = false;
        let c = PackCatalog::new(packs).unwrap();
        assert!(c.active_pack("plus").is_none());
        assert_eq!(c.all().len(), 3);
        assert_eq!(
            c.active().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            ["starter", "pro"]
        );
    }
}
