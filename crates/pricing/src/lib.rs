//! Prices and costs: the bundled, versioned price table (`prices.yaml`),
//! config overrides, finding a model's entry from the name an upstream
//! uses, the exact cost of a request, and token estimates for streams cut
//! off before usage arrived. Format and rules: docs/pricing.md.

mod cost;
mod entry;
mod error;
mod table;
mod tokens;
mod usd;

pub use cost::{Component, Counts, Priced, Quote, QuoteLine};
pub use entry::{
    Batch, Day, Factor, PROVIDER_KINDS, PerImage, PriceEntry, Tier, TimeOfDay, TimeWindow,
};
pub use error::PricingError;
pub use table::{Explanation, Found, MatchKind, PriceTable, SELF_HOSTED_KINDS};
pub use tokens::{Encoding, encoding_for, estimate_tokens, preload_tokenizers};
pub use usd::{ParseUsdError, Usd};

#[cfg(test)]
mod tests;
