//! The `sipmesh` binary.
fn main() {}
