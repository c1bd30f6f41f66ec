//! Standard Webhooks 1.0 signatures: `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "{webhook-id}.{webhook-timestamp}.{body}">`, one `v1,...` per valid secret separated by
//! spaces (two during a rotation). Secrets are `whsec_` + base64 of 24-64 random bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Prefix of a signing secret's text form.
pub const SECRET_PREFIX: &str = "whsec_";

/// Returns a new secret (32 random bytes) in its text form.
pub fn generate_secret() -> String {
    use aes_gcm::aead::OsRng;
    use aes_gcm::aead::rand_core::RngCore;
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", B64.encode(key))
}

/// Returns the key bytes of a `whsec_...` secret, or why it is not one.
pub fn secret_bytes(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.strip_prefix(SECRET_PREFIX).ok_or("a signing secret starts with whsec_")?;
    let bytes = B64.decode(b64).map_err(|_| "a signing secret is base64 after whsec_".to_owned())?;
    if !(24..=64).contains(&bytes.len()) {
        return Err(format!("a signing secret has 24-64 bytes, not {}", bytes.len()));
    }
    Ok(bytes)
}

/// Returns `v1,<signature>` of one message with one key.
pub fn sign(key: &[u8], msg_id: &str, timestamp: u64, body: &[u8]) -> String {
    // new_from_slice only fails for key lengths HMAC cannot take; HMAC takes any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// Returns the `webhook-signature` value for every key, space-separated.
pub fn signature_header(keys: &[Vec<u8>], msg_id: &str, timestamp: u64, body: &[u8]) -> String {
    keys.iter().map(|k| sign(k, msg_id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specs_example_vector() {
        // Standard Webhooks specification, "Signature scheme" example.
        let key = secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_are_well_formed_and_distinct() {
        let a = generate_secret();
        assert!(a.starts_with("whsec_"));
        assert_eq!(secret_bytes(&a).unwrap().len(), 32);
        assert_ne!(a, generate_secret());
        assert!(secret_bytes("whsec_c2hvcnQ=").is_err(), "too short");
        assert!(secret_bytes("nope").is_err());
        let keys = vec![vec![1u8; 32], vec![2u8; 32]];
        let h = signature_header(&keys, "id", 1, b"x");
        assert_eq!(h.split(' ').count(), 2);
        assert!(h.split(' ').all(|s| s.starts_with("v1,")));
    }
}
