//! CLOB authentication headers.
//!
//! * **L1** (creating or deriving API keys, `POST /auth/api-key`, `GET /auth/derive-api-key`):
//!   `POLY_ADDRESS`, `POLY_SIGNATURE` (the EIP-712 `ClobAuth` signature), `POLY_TIMESTAMP`,
//!   `POLY_NONCE`.
//! * **L2** (every trading call): `POLY_ADDRESS`, `POLY_SIGNATURE` = URL-safe base64 (with `=`
//!   padding) of HMAC-SHA256 over `timestamp ‖ METHOD ‖ path ‖ body`, keyed with the API
//!   secret decoded from URL-safe base64, `POLY_TIMESTAMP` (seconds), `POLY_API_KEY`,
//!   `POLY_PASSPHRASE`. The path is without its query; the body is the exact bytes sent.

use std::fmt;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, Engine, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::sign::{Address, Wallet};

/// URL-safe alphabet; decoding accepts the secret with or without its padding.
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// URL-safe alphabet with `=` padding, as the venue compares signatures.
const URL_SAFE_PADDED: GeneralPurpose = base64::engine::general_purpose::URL_SAFE;

/// API credentials (L2). `Debug` shows the key's first characters only.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ApiCreds {
    #[serde(rename = "apiKey", alias = "api_key", alias = "key")]
    pub key: String,
    pub secret: String,
    pub passphrase: String,
}

impl fmt::Debug for ApiCreds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head: String = self.key.chars().take(8).collect();
        f.debug_struct("ApiCreds")
            .field("key", &format!("{head}…"))
            .field("secret", &"<redacted>")
            .field("passphrase", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the API secret is not URL-safe base64")]
    Secret,
}

/// The L2 signature of one request.
pub fn l2_signature(
    secret: &str,
    timestamp: &str,
    method: &str,
    path: &str,
    body: &str,
) -> Result<String, AuthError> {
    let key = URL_SAFE_LENIENT.decode(secret.trim()).map_err(|_| AuthError::Secret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes a key of any length");
    mac.update(timestamp.as_bytes());
    mac.update(method.as_bytes());
    mac.update(path.as_bytes());
    mac.update(body.as_bytes());
    Ok(URL_SAFE_PADDED.encode(mac.finalize().into_bytes()))
}

/// Whether `signature` is the L2 signature of the request (constant time).
pub fn l2_verify(
    secret: &str,
    timestamp: &str,
    method: &str,
    path: &str,
    body: &str,
    signature: &str,
) -> bool {
    let Ok(key) = URL_SAFE_LENIENT.decode(secret.trim()) else { return false };
    let Ok(given) = URL_SAFE_LENIENT.decode(signature.trim()) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes a key of any length");
    mac.update(timestamp.as_bytes());
    mac.update(method.as_bytes());
    mac.update(path.as_bytes());
    mac.update(body.as_bytes());
    mac.verify_slice(&given).is_ok()
}

/// The five L2 headers of a request. `address` is the signer's (the API key belongs to it).
pub fn l2_headers(
    address: Address,
    creds: &ApiCreds,
    timestamp: u64,
    method: &str,
    path: &str,
    body: &str,
) -> Result<Vec<(&'static str, String)>, AuthError> {
    let ts = timestamp.to_string();
    let sig = l2_signature(&creds.secret, &ts, method, path, body)?;
    Ok(vec![
        ("POLY_ADDRESS", address.to_string()),
        ("POLY_SIGNATURE", sig),
        ("POLY_TIMESTAMP", ts),
        ("POLY_API_KEY", creds.key.clone()),
        ("POLY_PASSPHRASE", creds.passphrase.clone()),
    ])
}

/// The four L1 headers that create or derive API keys.
pub fn l1_headers(wallet: &Wallet, chain_id: u64, timestamp: u64, nonce: u64) -> Vec<(&'static str, String)> {
    let ts = timestamp.to_string();
    vec![
        ("POLY_ADDRESS", wallet.address().to_string()),
        ("POLY_SIGNATURE", wallet.sign_clob_auth(chain_id, &ts, nonce)),
        ("POLY_TIMESTAMP", ts),
        ("POLY_NONCE", nonce.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::polymarket::sign::{recover, ClobAuth, Domain, AMOY};

    fn secret() -> String {
        format!("{}=", "A".repeat(43))
    }

    #[test]
    fn hmac_vectors() {
        assert_eq!(
            l2_signature(&secret(), "1000000", "test-sign", "/orders", r#"{"hash":"0x123"}"#).unwrap(),
            "4gJVbox-R6XlDK4nlaicig0_ANVL1qdcahiL8CXfXLM="
        );
        assert_eq!(
            l2_signature(&secret(), "1", "GET", "/", "").unwrap(),
            "eHaylCwqRSOa2LFD77Nt_SaTpbsxzN8eTEI3LryhEj4="
        );
        // The secret without its padding decodes to the same key.
        assert_eq!(
            l2_signature(&"A".repeat(43), "1", "GET", "/", "").unwrap(),
            "eHaylCwqRSOa2LFD77Nt_SaTpbsxzN8eTEI3LryhEj4="
        );
        assert!(l2_verify(&secret(), "1", "GET", "/", "", "eHaylCwqRSOa2LFD77Nt_SaTpbsxzN8eTEI3LryhEj4="));
        assert!(!l2_verify(&secret(), "2", "GET", "/", "", "eHaylCwqRSOa2LFD77Nt_SaTpbsxzN8eTEI3LryhEj4="));
        assert_eq!(l2_signature("not base64!", "1", "GET", "/", ""), Err(AuthError::Secret));
    }

    #[test]
    fn headers_carry_what_the_venue_checks() {
        let w = Wallet::from_hex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80").unwrap();
        let l1 = l1_headers(&w, AMOY, 10000000, 23);
        assert_eq!(l1[0], ("POLY_ADDRESS", "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266".to_string()));
        assert_eq!(l1[1].1, "0xf62319a987514da40e57e2f4d7529f7bac38f0355bd88bb5adbb3768d80de6c1682518e0af677d5260366425f4361e7b70c25ae232aff0ab2331e2b164a1aedc1b");
        assert_eq!((l1[2].1.as_str(), l1[3].1.as_str()), ("10000000", "23"));
        let auth = ClobAuth { address: w.address(), timestamp: "10000000".into(), nonce: 23 };
        assert_eq!(
            recover(&Domain::clob_auth(AMOY).digest(&auth.struct_hash()), &l1[1].1).unwrap(),
            w.address()
        );

        let creds = ApiCreds { key: "key-1".into(), secret: secret(), passphrase: "phrase-9f2c".into() };
        let l2 = l2_headers(w.address(), &creds, 1, "GET", "/", "").unwrap();
        let names: Vec<_> = l2.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            ["POLY_ADDRESS", "POLY_SIGNATURE", "POLY_TIMESTAMP", "POLY_API_KEY", "POLY_PASSPHRASE"]
        );
        assert_eq!(l2[1].1, "eHaylCwqRSOa2LFD77Nt_SaTpbsxzN8eTEI3LryhEj4=");
        assert!(!format!("{creds:?}").contains("AAAA") && !format!("{creds:?}").contains("phrase-9f2c"));
    }
}
