//! # sipmesh-cluster: membership, placement, shared state and failover
//!
//! Empty until the clustering issue: a single node needs nothing from here yet, and nothing here
//! pretends otherwise.
