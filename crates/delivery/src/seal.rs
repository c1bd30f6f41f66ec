//! Secrets at rest: signing secrets and header values marked secret are stored sealed with
//! AES-256-GCM under a key from configuration (`secrets.key`, base64 of 32 bytes). The
//! text form is `enc:v1:<base64(nonce || ciphertext)>`. Only the worker opens them, just
//! before sending; the API, the database and the queue only ever see sealed values.

use aes_gcm::aead::{Aead, KeyInit, OsRng, rand_core::RngCore};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// Prefix of a sealed value.
pub const SEALED_PREFIX: &str = "enc:v1:";

/// A sealing key.
#[derive(Clone)]
pub struct SealKey(Aes256Gcm);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

/// Why a value could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key is not base64 of 32 bytes.
    #[error("secrets.key must be base64 of 32 bytes (e.g. `openssl rand -base64 32`)")]
    BadKey,
    /// Not a sealed value, or sealed with another key, or tampered with.
    #[error("cannot open a sealed value (wrong secrets.key, or corrupted)")]
    Open,
}

impl SealKey {
    /// Parses a base64 key.
    pub fn from_base64(s: &str) -> Result<Self, SealError> {
        let bytes = B64.decode(s.trim()).map_err(|_| SealError::BadKey)?;
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| SealError::BadKey)?;
        Ok(Self(cipher))
    }

    /// Returns a new random key in base64 (for `cronhook dev`'s key file).
    pub fn generate_base64() -> String {
        let mut k = [0u8; 32];
        OsRng.fill_bytes(&mut k);
        B64.encode(k)
    }

    /// Seals `plain`.
    pub fn seal(&self, plain: &str) -> String {
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        match self.0.encrypt(&Nonce::from(nonce), plain.as_bytes()) {
            Ok(ct) => {
                let mut out = nonce.to_vec();
                out.extend_from_slice(&ct);
                format!("{SEALED_PREFIX}{}", B64.encode(out))
            }
            // AES-GCM only fails for plaintexts beyond 64 GiB
            Err(_) => String::new(),
        }
    }

    /// Opens a sealed value.
    pub fn open(&self, sealed: &str) -> Result<String, SealError> {
        let b64 = sealed.strip_prefix(SEALED_PREFIX).ok_or(SealError::Open)?;
        let raw = B64.decode(b64).map_err(|_| SealError::Open)?;
        if raw.len() < 12 {
            return Err(SealError::Open);
        }
        let (nonce, ct) = raw.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| SealError::Open)?;
        let plain = self.0.decrypt(&Nonce::from(nonce), ct).map_err(|_| SealError::Open)?;
        String::from_utf8(plain).map_err(|_| SealError::Open)
    }
}

/// Returns whether a stored value is sealed.
pub fn is_sealed(v: &str) -> bool {
    v.starts_with(SEALED_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let k = SealKey::from_base64(&SealKey::generate_base64()).unwrap();
        let s = k.seal("Bearer hunter2");
        assert!(is_sealed(&s) && !s.contains("hunter2"));
        assert_ne!(s, k.seal("Bearer hunter2"), "a fresh nonce every time");
        assert_eq!(k.open(&s).unwrap(), "Bearer hunter2");
        let other = SealKey::from_base64(&SealKey::generate_base64()).unwrap();
        assert!(other.open(&s).is_err(), "another key cannot open it");
        let mut t = s.clone();
        t.pop();
        t.push(if s.ends_with('A') { 'B' } else { 'A' });
        assert!(k.open(&t).is_err(), "tampering is detected");
        assert!(SealKey::from_base64("c2hvcnQ=").is_err());
    }
}
