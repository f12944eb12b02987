//! Benchmarks for sipmesh: criterion micro-benchmarks in `benches/`, SIPp load scripts beside.
