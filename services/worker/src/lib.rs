//! The worker: consumes a provider's work from the bus and calls the upstream
