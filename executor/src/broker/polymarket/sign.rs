//! EIP-712 hashing and secp256k1 signing of Polymarket CLOB V2 orders and of the L1 `ClobAuth`
//! message, with `k256` (ECDSA, public-key recovery) and `sha3` (Keccak-256).
//!
//! Both structs have only static members (uint, address, bytes32) apart from the auth
//! message's two strings, so their EIP-712 encodings are a fixed series of 32-byte words:
//! `hashStruct(s) = keccak256(typeHash ‖ enc(member)…)`, strings hashed first, and the digest
//! signed is `keccak256(0x19 0x01 ‖ domainSeparator ‖ hashStruct(message))`. Signatures are
//! `r ‖ s ‖ v` with low `s` and `v` = 27 + the recovery id, hex with `0x`, as the venue wants.

use std::fmt;
use std::str::FromStr;

use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use sha3::{Digest, Keccak256};

/// Polygon main net.
pub const POLYGON: u64 = 137;
/// Polygon Amoy test net.
pub const AMOY: u64 = 80002;

/// The V2 exchange of standard (binary) markets; the same address on Polygon and Amoy.
pub const EXCHANGE_V2: &str = "0xE111180000d2663C0091e4f400237545B87B996B";
/// The V2 exchange of neg-risk markets.
pub const NEG_RISK_EXCHANGE_V2: &str = "0xe2222d279d744050d28e00520010520000310F59";
/// The V3 exchange (domain version "3", the same order struct).
pub const EXCHANGE_V3: &str = "0xe3333700cA9d93003F00f0F71f8515005F6c00Aa";

/// The EIP-712 type of a V2 order (11 fields; `expiration` travels unsigned in the JSON body).
pub const ORDER_TYPE: &str = "Order(uint256 salt,address maker,address signer,uint256 tokenId,uint256 makerAmount,uint256 takerAmount,uint8 side,uint8 signatureType,uint256 timestamp,bytes32 metadata,bytes32 builder)";
/// The EIP-712 type of the L1 authentication message.
pub const CLOB_AUTH_TYPE: &str = "ClobAuth(address address,string timestamp,uint256 nonce,string message)";
/// What an L1 signature attests.
pub const CLOB_AUTH_MESSAGE: &str = "This message attests that I control the given wallet";

const DOMAIN_TYPE: &str =
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)";
const DOMAIN_TYPE_NO_CONTRACT: &str = "EIP712Domain(string name,string version,uint256 chainId)";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("not a 20-byte hex address: {0:?}")]
    Address(String),
    #[error("not an unsigned 256-bit decimal number: {0:?}")]
    Uint(String),
    #[error("not a 32-byte hex value: {0:?}")]
    Bytes32(String),
    #[error("the private key is not 32 bytes of hex, or not a valid secp256k1 scalar")]
    PrivateKey,
    #[error("not a 65-byte hex signature with v 27/28 (or 0/1)")]
    Signature,
    #[error("the signature does not recover a public key")]
    Recover,
}

pub fn keccak(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// Hex (with or without `0x`) to exactly `N` bytes.
pub fn from_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let h = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s).as_bytes();
    let mut out = [0u8; N];
    hex::decode_to_slice(h, &mut out).ok()?;
    Some(out)
}

/// Lower-case hex with `0x`.
pub fn to_hex(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// A 20-byte account or contract address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Address(pub [u8; 20]);

impl Address {
    pub const ZERO: Address = Address([0; 20]);

    /// The address of a public key: the last 20 bytes of keccak(uncompressed point without 0x04).
    pub fn of_key(key: &VerifyingKey) -> Address {
        let point = key.to_encoded_point(false);
        let hash = keccak(&point.as_bytes()[1..]);
        let mut a = [0u8; 20];
        a.copy_from_slice(&hash[12..]);
        Address(a)
    }

    /// EIP-55 mixed-case checksum form (how the SDKs send addresses).
    pub fn checksummed(&self) -> String {
        let lower = to_hex(&self.0);
        let hash = keccak(&lower.as_bytes()[2..]);
        let mut out = String::from("0x");
        for (i, c) in lower[2..].chars().enumerate() {
            let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 15;
            out.push(if c.is_ascii_alphabetic() && nibble >= 8 { c.to_ascii_uppercase() } else { c });
        }
        out
    }

    fn word(&self) -> [u8; 32] {
        let mut w = [0u8; 32];
        w[12..].copy_from_slice(&self.0);
        w
    }
}

impl FromStr for Address {
    type Err = SignError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        from_hex::<20>(s.trim()).map(Address).ok_or_else(|| SignError::Address(s.to_string()))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.checksummed())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.checksummed())
    }
}

/// An unsigned 256-bit integer, big-endian (token ids are 77-78 decimal digits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct U256(pub [u8; 32]);

impl U256 {
    pub const ZERO: U256 = U256([0; 32]);

    pub fn from_u128(v: u128) -> U256 {
        let mut w = [0u8; 32];
        w[16..].copy_from_slice(&v.to_be_bytes());
        U256(w)
    }

    /// The decimal form (what the JSON body carries).
    pub fn to_decimal(&self) -> String {
        let mut n = self.0;
        let mut digits = Vec::new();
        while n.iter().any(|&b| b != 0) {
            // Divide by 10 in place, keeping the remainder.
            let mut rem = 0u32;
            for b in n.iter_mut() {
                let cur = (rem << 8) | *b as u32;
                *b = (cur / 10) as u8;
                rem = cur % 10;
            }
            digits.push(b'0' + rem as u8);
        }
        if digits.is_empty() {
            return "0".into();
        }
        digits.reverse();
        String::from_utf8(digits).expect("ascii digits")
    }
}

impl FromStr for U256 {
    type Err = SignError;
    /// Decimal digits only (no sign, no exponent, no hex).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || SignError::Uint(s.to_string());
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err());
        }
        let mut n = [0u8; 32];
        for c in s.bytes() {
            // n = n × 10 + digit, refusing an overflow out of the top byte.
            let mut carry = (c - b'0') as u32;
            for b in n.iter_mut().rev() {
                let cur = *b as u32 * 10 + carry;
                *b = cur as u8;
                carry = cur >> 8;
            }
            if carry != 0 {
                return Err(err());
            }
        }
        Ok(U256(n))
    }
}

impl fmt::Display for U256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_decimal())
    }
}

impl fmt::Debug for U256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_decimal())
    }
}

fn uint_word(v: u64) -> [u8; 32] {
    U256::from_u128(v as u128).0
}

/// An EIP-712 domain: the exchange's (with its contract) or ClobAuth's (without).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    pub name: String,
    pub version: String,
    pub chain_id: u64,
    pub verifying_contract: Option<Address>,
}

impl Domain {
    /// The exchange domain of a market: the neg-risk exchange for neg-risk markets; `version`
    /// "2" (or "3", which has a single exchange).
    pub fn exchange(chain_id: u64, neg_risk: bool, version: &str) -> Domain {
        let contract = match (version, neg_risk) {
            ("3", _) => EXCHANGE_V3,
            (_, true) => NEG_RISK_EXCHANGE_V2,
            (_, false) => EXCHANGE_V2,
        };
        Domain {
            name: "Polymarket CTF Exchange".into(),
            version: version.into(),
            chain_id,
            verifying_contract: Some(contract.parse().expect("valid constant address")),
        }
    }

    /// The domain of L1 authentication (no contract).
    pub fn clob_auth(chain_id: u64) -> Domain {
        Domain { name: "ClobAuthDomain".into(), version: "1".into(), chain_id, verifying_contract: None }
    }

    pub fn separator(&self) -> [u8; 32] {
        let mut enc = Vec::with_capacity(5 * 32);
        let ty = if self.verifying_contract.is_some() { DOMAIN_TYPE } else { DOMAIN_TYPE_NO_CONTRACT };
        enc.extend_from_slice(&keccak(ty.as_bytes()));
        enc.extend_from_slice(&keccak(self.name.as_bytes()));
        enc.extend_from_slice(&keccak(self.version.as_bytes()));
        enc.extend_from_slice(&uint_word(self.chain_id));
        if let Some(c) = &self.verifying_contract {
            enc.extend_from_slice(&c.word());
        }
        keccak(&enc)
    }

    /// The digest to sign for a struct hash in this domain.
    pub fn digest(&self, struct_hash: &[u8; 32]) -> [u8; 32] {
        let mut enc = Vec::with_capacity(66);
        enc.extend_from_slice(&[0x19, 0x01]);
        enc.extend_from_slice(&self.separator());
        enc.extend_from_slice(struct_hash);
        keccak(&enc)
    }
}

/// Order side as signed: 0 = BUY, 1 = SELL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Buy = 0,
    Sell = 1,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        }
    }
}

/// Who signs for whom: 0 EOA, 1 POLY_PROXY, 2 POLY_GNOSIS_SAFE, 3 POLY_1271 (deposit wallet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureType {
    Eoa = 0,
    PolyProxy = 1,
    PolyGnosisSafe = 2,
    Poly1271 = 3,
}

impl SignatureType {
    pub fn from_code(code: u8) -> Option<SignatureType> {
        Some(match code {
            0 => SignatureType::Eoa,
            1 => SignatureType::PolyProxy,
            2 => SignatureType::PolyGnosisSafe,
            3 => SignatureType::Poly1271,
            _ => return None,
        })
    }
}

/// A V2 order as signed (amounts in 6-decimal base units, `timestamp` in ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub salt: u64,
    pub maker: Address,
    pub signer: Address,
    pub token_id: U256,
    pub maker_amount: U256,
    pub taker_amount: U256,
    pub side: Side,
    pub signature_type: SignatureType,
    pub timestamp: u64,
    pub metadata: [u8; 32],
    pub builder: [u8; 32],
}

impl Order {
    pub fn struct_hash(&self) -> [u8; 32] {
        let mut enc = Vec::with_capacity(12 * 32);
        enc.extend_from_slice(&keccak(ORDER_TYPE.as_bytes()));
        enc.extend_from_slice(&uint_word(self.salt));
        enc.extend_from_slice(&self.maker.word());
        enc.extend_from_slice(&self.signer.word());
        enc.extend_from_slice(&self.token_id.0);
        enc.extend_from_slice(&self.maker_amount.0);
        enc.extend_from_slice(&self.taker_amount.0);
        enc.extend_from_slice(&uint_word(self.side as u64));
        enc.extend_from_slice(&uint_word(self.signature_type as u64));
        enc.extend_from_slice(&uint_word(self.timestamp));
        enc.extend_from_slice(&self.metadata);
        enc.extend_from_slice(&self.builder);
        keccak(&enc)
    }

    /// The EIP-712 digest in `domain`: also the venue's order id (its order hash).
    pub fn hash(&self, domain: &Domain) -> [u8; 32] {
        domain.digest(&self.struct_hash())
    }
}

/// The L1 authentication message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClobAuth {
    pub address: Address,
    /// Unix seconds, as a decimal string (signed as a string).
    pub timestamp: String,
    pub nonce: u64,
}

impl ClobAuth {
    pub fn struct_hash(&self) -> [u8; 32] {
        let mut enc = Vec::with_capacity(5 * 32);
        enc.extend_from_slice(&keccak(CLOB_AUTH_TYPE.as_bytes()));
        enc.extend_from_slice(&self.address.word());
        enc.extend_from_slice(&keccak(self.timestamp.as_bytes()));
        enc.extend_from_slice(&uint_word(self.nonce));
        enc.extend_from_slice(&keccak(CLOB_AUTH_MESSAGE.as_bytes()));
        keccak(&enc)
    }
}

/// A private key and its address. `Debug` shows the address only: the key is never printed.
#[derive(Clone)]
pub struct Wallet {
    key: SigningKey,
    address: Address,
}

impl fmt::Debug for Wallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wallet").field("address", &self.address).field("key", &"<redacted>").finish()
    }
}

impl Wallet {
    /// From 32 bytes of hex (with or without `0x`).
    pub fn from_hex(private_key: &str) -> Result<Wallet, SignError> {
        let bytes = from_hex::<32>(private_key.trim()).ok_or(SignError::PrivateKey)?;
        let key = SigningKey::from_slice(&bytes).map_err(|_| SignError::PrivateKey)?;
        let address = Address::of_key(key.verifying_key());
        Ok(Wallet { key, address })
    }

    pub fn address(&self) -> Address {
        self.address
    }

    /// Signs a 32-byte digest: `r ‖ s ‖ v`, low s, v = 27 + recovery id.
    pub fn sign_digest(&self, digest: &[u8; 32]) -> [u8; 65] {
        let (sig, recid) = self.key.sign_prehash_recoverable(digest).expect("a 32-byte prehash always signs");
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig.to_bytes());
        out[64] = 27 + recid.to_byte();
        out
    }

    /// The `0x…` signature of an order in `domain`.
    pub fn sign_order(&self, order: &Order, domain: &Domain) -> String {
        to_hex(&self.sign_digest(&order.hash(domain)))
    }

    /// The `0x…` L1 signature of `ClobAuth{address: ours, timestamp, nonce}`.
    pub fn sign_clob_auth(&self, chain_id: u64, timestamp: &str, nonce: u64) -> String {
        let auth = ClobAuth { address: self.address, timestamp: timestamp.to_string(), nonce };
        to_hex(&self.sign_digest(&Domain::clob_auth(chain_id).digest(&auth.struct_hash())))
    }
}

/// The address that signed `digest` with `signature` (65 bytes hex, v 27/28 or 0/1).
pub fn recover(digest: &[u8; 32], signature: &str) -> Result<Address, SignError> {
    let bytes = from_hex::<65>(signature.trim()).ok_or(SignError::Signature)?;
    let v = match bytes[64] {
        27 | 28 => bytes[64] - 27,
        0 | 1 => bytes[64],
        _ => return Err(SignError::Signature),
    };
    let sig = Signature::from_slice(&bytes[..64]).map_err(|_| SignError::Signature)?;
    let recid = RecoveryId::from_byte(v).ok_or(SignError::Signature)?;
    let key = VerifyingKey::recover_from_prehash(digest, &sig, recid).map_err(|_| SignError::Recover)?;
    Ok(Address::of_key(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The public Hardhat development key (account 0).
    const KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    const ADDRESS: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

    fn zero_order() -> Order {
        Order {
            salt: 0,
            maker: Address::ZERO,
            signer: Address::ZERO,
            token_id: U256::ZERO,
            maker_amount: U256::ZERO,
            taker_amount: U256::ZERO,
            side: Side::Buy,
            signature_type: SignatureType::Eoa,
            timestamp: 0,
            metadata: [0; 32],
            builder: [0; 32],
        }
    }

    #[test]
    fn the_key_has_its_known_address_in_checksum_form() {
        let w = Wallet::from_hex(KEY).unwrap();
        assert_eq!(w.address().to_string(), ADDRESS);
        assert_eq!(w.address(), ADDRESS.to_lowercase().parse().unwrap());
        assert!(!format!("{w:?}").contains("ac0974"), "Debug must not show the key");
        assert_eq!(Wallet::from_hex("0x1234").unwrap_err(), SignError::PrivateKey);
        assert_eq!(Wallet::from_hex(&format!("0x{}", "0".repeat(64))).unwrap_err(), SignError::PrivateKey);
    }

    #[test]
    fn clob_auth_vectors() {
        let w = Wallet::from_hex(KEY).unwrap();
        assert_eq!(
            w.sign_clob_auth(AMOY, "10000000", 23),
            "0xf62319a987514da40e57e2f4d7529f7bac38f0355bd88bb5adbb3768d80de6c1682518e0af677d5260366425f4361e7b70c25ae232aff0ab2331e2b164a1aedc1b"
        );
        assert_eq!(
            w.sign_clob_auth(POLYGON, "100000", 0),
            "0xfdfb5abf512e439ea61c8595c18e527e718bf16010acf57cef51d09e15893098275d3c6f73038f36ec0cd0ce55436fca14dc64b11611f4dce896e354207508cc1b"
        );
    }

    #[test]
    fn order_vectors() {
        let w = Wallet::from_hex(KEY).unwrap();
        let zero = zero_order();
        assert_eq!(
            w.sign_order(&zero, &Domain::exchange(POLYGON, false, "2")),
            "0x8a6edfe94a2169c3d05673521b53b7aee2205288f1363f1c9e24716317eebe6a17ca4bc397b85a5f39be21f32d0d8b38e0fd6de6af091dc0f4ba1f667d1883981c"
        );
        assert_eq!(
            w.sign_order(&zero, &Domain::exchange(POLYGON, true, "2")),
            "0x75a6b017773e1afd1ea606f92cd59dd90ecd4de97d23ceb4450234cde113e34117c2e820e6ea952948f3a9ec8a0852035ca1c250be6d004839ee964e432b3bab1b"
        );
        let order = Order {
            salt: 479249096354,
            maker: w.address(),
            signer: w.address(),
            token_id: "1234".parse().unwrap(),
            maker_amount: U256::from_u128(100_000_000),
            taker_amount: U256::from_u128(50_000_000),
            side: Side::Buy,
            signature_type: SignatureType::Eoa,
            timestamp: 1710000000000,
            metadata: [0; 32],
            builder: [0; 32],
        };
        let domain = Domain::exchange(POLYGON, false, "2");
        let sig = w.sign_order(&order, &domain);
        assert_eq!(
            sig,
            "0x42c7b4857d51e344045fcfde17b37cf1290d784471ffe618c22aa56ea5ddcf0009015b87ffb299813f5597e86d4ad56f40d634558d915edb719e6fc71dbc0d891c"
        );
        // The signer is recovered from the order hash; any changed field recovers someone else.
        assert_eq!(recover(&order.hash(&domain), &sig).unwrap(), w.address());
        let mut other = order.clone();
        other.taker_amount = U256::from_u128(50_000_001);
        assert_ne!(recover(&other.hash(&domain), &sig).unwrap(), w.address());
        // The V3 domain is another hash (an order signed for V2 does not verify there).
        assert_ne!(order.hash(&domain), order.hash(&Domain::exchange(POLYGON, false, "3")));
        assert_eq!(recover(&order.hash(&domain), "0x12"), Err(SignError::Signature));
    }

    #[test]
    fn u256_decimal_round_trip() {
        let id = "71321045679252212594626385532706912750332728571942532289631379312455583992563";
        assert_eq!(id.parse::<U256>().unwrap().to_decimal(), id);
        assert_eq!("0".parse::<U256>().unwrap().to_decimal(), "0");
        assert_eq!("1234".parse::<U256>().unwrap(), U256::from_u128(1234));
        let max = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        assert_eq!(max.parse::<U256>().unwrap(), U256([0xff; 32]));
        let over = "115792089237316195423570985008687907853269984665640564039457584007913129639936";
        assert!(over.parse::<U256>().is_err());
        assert!(
            "-1".parse::<U256>().is_err() && "".parse::<U256>().is_err() && "0x10".parse::<U256>().is_err()
        );
    }
}
