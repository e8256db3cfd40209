//! The comet node: holds client TCP and WebSocket connections and delivers pushes (not built yet).
