//! Who is calling. A request carries a virtual key (`sk-sy-...`, stored
//! only as a keyed hash, revocable) or a bearer JWT from the team's
//! identity provider; either resolves to a [`Principal`] with the team,
//! user and roles it acts for, and the models and limits it is allowed.

pub mod access;
pub mod jwt;
pub mod keys;

pub use access::{AccessPolicy, AccessRule, Credential, Denied, Principal};
pub use keys::{
    BudgetWindow, KeyBudget, KeyError, KeyHasher, KeyLimits, KeyRecord, Keyring, NewKey,
};
