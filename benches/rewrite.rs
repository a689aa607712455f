//! Placeholder until the rewrite bench lands.
fn main() {}
