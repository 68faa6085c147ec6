//! What can be wrong with a price table.

/// A price table (the bundled file or `pricing.models` in a config) that
/// cannot be used. Every variant names where the table came from and, when
/// it is one entry's fault, the model and the field, so the message alone
/// is enough to fix the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    /// Not YAML, or not the `version` / `models` shape.
    #[error("{origin}: not a price table: {message}")]
    Syntax { origin: String, message: String },

    /// An entry that does not deserialize (unknown field, wrong type).
    #[error("{origin}: models[{index}] (model `{model}`): {message}")]
    Entry {
        origin: String,
        index: usize,
        model: String,
        message: String,
    },

    /// An entry that deserializes but breaks a rule (negative rate, tiers
    /// out of order, a window time that does not exist, unknown provider).
    #[error("{origin}: model `{model}` (provider `{provider}`): `{field}` {problem}")]
    Invalid {
        origin: String,
        provider: String,
        model: String,
        field: String,
        problem: String,
    },

    /// Two entries answer to the same provider and name: lookups would be
    /// ambiguous, so the table is refused rather than picking one.
    #[error(
        "{origin}: `{name}` is listed twice under provider `{provider}` (entries `{first}` and `{second}`)"
    )]
    Duplicate {
        origin: String,
        provider: String,
        name: String,
        first: String,
        second: String,
    },
}
