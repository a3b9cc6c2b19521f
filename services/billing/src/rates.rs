//! The rate card: what an hour of use costs, per flavor or per resource unit, read
//! from a small TOML file (see `ops/billing-rates.toml`):
//!
//! ```toml
//! currency = "EUR"
//!
//! [resources]          # price of one unit for one hour
//! vcpu_hour = 0.02
//! memory_mb_hour = 0.00001
//! disk_gb_hour = 0.0001
//! instance_hour = 0.001
//!
//! [flavors."m1.large"] # a flavor's own price per instance-hour (replaces resources)
//! hour = 0.25
//! ```
//!
//! Invariant: a flavor named under `[flavors]` is priced by its `hour` only; any
//! other flavor by the `[resources]` rates of its vCPUs, RAM and disk (root +
//! ephemeral) plus `instance_hour`. Unknown keys are refused, so a typo is an error and
//! not a free resource.

use std::collections::BTreeMap;

use projections::usage::UsageFlavor;
use serde::{Deserialize, Serialize};

use crate::BillingError;

/// Prices of one resource unit for one hour.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceRates {
    /// One vCPU for an hour.
    pub vcpu_hour: f64,
    /// One MB of RAM for an hour.
    pub memory_mb_hour: f64,
    /// One GB of disk (root + ephemeral) for an hour.
    pub disk_gb_hour: f64,
    /// One instance for an hour, whatever its size.
    pub instance_hour: f64,
}

/// A flavor's own price.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlavorRate {
    /// One instance of the flavor for an hour.
    pub hour: f64,
}

/// The rate card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateCard {
    /// Currency of every price (a label).
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Per-resource prices.
    #[serde(default)]
    pub resources: ResourceRates,
    /// Per-flavor prices, by flavor name.
    #[serde(default)]
    pub flavors: BTreeMap<String, FlavorRate>,
}

fn default_currency() -> String {
    "EUR".into()
}

impl Default for RateCard {
    fn default() -> Self {
        RateCard {
            currency: default_currency(),
            resources: ResourceRates::default(),
            flavors: BTreeMap::new(),
        }
    }
}

impl RateCard {
    /// Parses a TOML rate card.
    pub fn parse(text: &str) -> Result<Self, BillingError> {
        let card: RateCard =
            toml::from_str(text).map_err(|e| BillingError::Rates(e.to_string()))?;
        let r = &card.resources;
        let all = [
            r.vcpu_hour,
            r.memory_mb_hour,
            r.disk_gb_hour,
            r.instance_hour,
        ]
        .into_iter()
        .chain(card.flavors.values().map(|f| f.hour));
        for p in all {
            if !p.is_finite() || p < 0.0 {
                return Err(BillingError::Rates(format!(
                    "prices must be finite and not negative, not {p}"
                )));
            }
        }
        Ok(card)
    }

    /// The price of `hours` of one instance of `flavor`.
    pub fn price(&self, flavor: &UsageFlavor, hours: f64) -> f64 {
        if let Some(f) = self.flavors.get(&flavor.name) {
            return f.hour * hours;
        }
        let r = &self.resources;
        hours
            * (r.vcpu_hour * f64::from(flavor.vcpus)
                + r.memory_mb_hour * flavor.memory_mb as f64
                + r.disk_gb_hour * flavor.local_gb() as f64
                + r.instance_hour)
    }
}
