//! Test peers set themselves up: the first test in a binary that needs a real third-party stack
//! (grpcio, websockets, curl, the agreement callees, azure-identity) runs `.ci/test-peers` once,
//! so a plain `cargo test` on a fresh machine runs the whole suite. The script is idempotent and
//! takes about a second when everything is installed. `TOKENGATE_TEST_NO_INSTALL=1` turns this
//! off (then a missing peer skips outside CI and fails in CI, as before).

use std::process::Command;
use std::sync::OnceLock;

/// Runs `.ci/test-peers` once per test binary; later calls wait for the first one's result.
pub fn ensure_test_peers() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if std::env::var_os("TOKENGATE_TEST_NO_INSTALL").is_some_and(|v| v != "0") {
            return;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/test-peers");
        match Command::new("bash").arg(script).status() {
            Ok(s) if s.success() => {}
            // Not fatal here: the test that needs the peer reports exactly what is missing.
            other => eprintln!("provision: {script} failed ({other:?})"),
        }
    });
}
