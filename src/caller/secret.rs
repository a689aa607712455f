//! The identity endpoint's shared secret (App Service's `IDENTITY_HEADER`).
//!
//! # Contract
//! - Read from `identity_endpoint.secret_file`, surrounding whitespace ignored; a missing file is
//!   created with 32 random bytes (hex) and mode 0600, atomically (`create_new`), so two processes
//!   starting at once agree on one secret.
//! - Compared in constant time; `Debug` is redacted. Only `identity-env` prints it, because
//!   printing it is that command's job.

use std::fmt;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

/// The shared secret.
pub struct IdentitySecret(String);

impl IdentitySecret {
    /// Reads `path`, creating it with a fresh random secret if it does not exist.
    pub fn load_or_create(path: &Path) -> io::Result<IdentitySecret> {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut file) => {
                let mut raw = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut raw)
                    .map_err(|_| io::Error::other("no randomness for the secret"))?;
                let secret: String = raw.iter().map(|b| format!("{b:02x}")).collect();
                file.write_all(secret.as_bytes())?;
                file.write_all(b"\n")?;
                file.sync_all()?;
                Ok(IdentitySecret(secret))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => IdentitySecret::read(path),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("identity_endpoint.secret_file {}: {e}", path.display()),
            )),
        }
    }

    fn read(path: &Path) -> io::Result<IdentitySecret> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("identity_endpoint.secret_file {}: {e}", path.display()),
            )
        })?;
        let secret = text.trim();
        if secret.len() < 16 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "identity_endpoint.secret_file {}: the secret must be at least 16 characters",
                    path.display()
                ),
            ));
        }
        Ok(IdentitySecret(secret.to_string()))
    }

    /// Whether `offered` is the secret, in time independent of where they differ.
    pub fn matches(&self, offered: &[u8]) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(self.0.as_bytes(), offered).is_ok()
    }

    /// The secret itself, for `tokengate identity-env` only.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdentitySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentitySecret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_with_mode_0600_then_reused() {
        let dir = std::env::temp_dir().join(format!("tg-secret-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        let a = IdentitySecret::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = IdentitySecret::load_or_create(&path).unwrap();
        assert!(b.matches(a.reveal().as_bytes()));
        assert!(!b.matches(b"wrong"));
        assert_eq!(format!("{a:?}"), "IdentitySecret([redacted])");
        std::fs::write(&path, "  short \n").unwrap();
        assert!(IdentitySecret::load_or_create(&path).is_err());
        std::fs::write(&path, "  0123456789abcdef0123 \n").unwrap();
        let c = IdentitySecret::load_or_create(&path).unwrap();
        assert!(c.matches(b"0123456789abcdef0123"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
