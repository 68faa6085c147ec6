//! Logging and tracing setup
