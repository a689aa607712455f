//! Placeholder until the normalize bench lands.
fn main() {}
