//! Deterministic tests of the proxy core: messages in, bytes out, virtual time.
