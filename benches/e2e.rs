//! Placeholder until the e2e bench lands.
fn main() {}
