//! The load generator for gopush-compatible clusters (not built yet).
