//! Simulated-link tests of the transaction machines.
