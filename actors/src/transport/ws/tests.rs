//! WebSocket tests.
