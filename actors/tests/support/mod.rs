//! Shared pieces of the location-store integration tests: a real `redis-server` per test and
//! helpers to build REGISTERs.

pub(crate) mod location_cases;

pub(crate) mod requests;
