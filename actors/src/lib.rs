//! # sipmesh-actors: the I/O shells
//!
//! Transport listeners and connections (UDP, TCP), the transaction shards that drive the sans-IO
//! transaction machines of `sipmesh-protocol`, and the registrar/proxy transaction user.

pub mod dialog;
pub mod engine;
pub mod fence;
pub mod location;
pub mod media;
pub mod redis_endpoint;
pub mod registrar;
pub mod rtpengine;
pub mod transport;
