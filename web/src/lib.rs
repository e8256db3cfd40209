//! The web node: public and admin HTTP APIs (not built yet).
