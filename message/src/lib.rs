//! The message node: the offline message store behind MessageRpc (not built yet).
