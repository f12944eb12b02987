//! # sipmesh-simulations: multi-node chaos runs against real processes
//!
//! Empty until the clustering issue fills it.
