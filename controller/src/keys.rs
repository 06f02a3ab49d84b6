//! The deploy key of an SSH source: an ed25519 key pair, generated once per FluxConfig.

use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, LineEnding, PrivateKey};

/// A key pair in the forms Flux reads from its auth Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    /// OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----`), the Secret's `identity`.
    pub private_openssh: String,
    /// `ssh-ed25519 AAAA… comment`, the Secret's `identity.pub` and the deploy key.
    pub public_openssh: String,
}

impl std::fmt::Debug for KeyPair {
    // The private key never goes to a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public_openssh", &self.public_openssh)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot generate an ed25519 key pair: {0}")]
pub struct KeyError(#[from] ssh_key::Error);

/// A new key pair, commented with the FluxConfig it belongs to (`fluxfence:NAMESPACE/NAME`), so
/// a repository's list of deploy keys says where each came from.
pub fn generate(comment: &str) -> Result<KeyPair, KeyError> {
    let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)?;
    key.set_comment(comment);
    let private_openssh = key.to_openssh(LineEnding::LF)?.to_string();
    let public_openssh = key.public_key().to_openssh()?;
    Ok(KeyPair {
        private_openssh,
        public_openssh,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_distinct_ed25519_pairs_that_read_back() {
        let first = generate("fluxfence:cluster-config/demo").unwrap();
        let second = generate("fluxfence:cluster-config/demo").unwrap();
        assert_ne!(first.public_openssh, second.public_openssh);
        assert!(first.public_openssh.starts_with("ssh-ed25519 "));
        assert!(
            first
                .public_openssh
                .ends_with(" fluxfence:cluster-config/demo")
        );
        let private = PrivateKey::from_openssh(&first.private_openssh).unwrap();
        assert_eq!(
            private.public_key().to_openssh().unwrap(),
            first.public_openssh
        );
        assert!(!format!("{first:?}").contains("PRIVATE KEY"));
    }
}
