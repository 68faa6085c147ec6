//! Route tables: which provider targets serve a requested model
