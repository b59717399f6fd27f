//! What is signed and whether a signature matches it: the template of a scheme's signed
//! content, its keys, the candidates a header holds, and the comparisons.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;
use smallvec::SmallVec;
use subtle::ConstantTimeEq;

use super::SignError;
#[cfg(feature = "ed25519")]
use super::SignErrorKind;

/// The algorithm behind one signature version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alg {
    HmacSha256,
    /// For the senders that still sign with SHA-1 (Intercom, Vercel, Twilio).
    HmacSha1,
    #[cfg(feature = "ed25519")]
    Ed25519,
}

impl Alg {
    pub(crate) fn len(self) -> usize {
        match self {
            Alg::HmacSha256 => 32,
            Alg::HmacSha1 => 20,
            #[cfg(feature = "ed25519")]
            Alg::Ed25519 => 64,
        }
    }
}

/// One piece of the signed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Text(String),
    Id,
    Timestamp,
    Body,
}

/// Parses a template such as `"v0:{timestamp}:{body}"`.
pub(crate) fn template(text: &str) -> Result<Vec<Part>, &'static str> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Text(rest[..open].to_owned()));
        }
        let close = rest[open..].find('}').ok_or("an unclosed `{`")? + open;
        parts.push(match &rest[open + 1..close] {
            "id" => Part::Id,
            "timestamp" => Part::Timestamp,
            "body" => Part::Body,
            _ => return Err("placeholders are {id}, {timestamp} and {body}"),
        });
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    if parts.iter().filter(|part| **part == Part::Body).count() != 1 {
        return Err("it must hold {body} exactly once");
    }
    Ok(parts)
}

/// A template of a built-in scheme: a constant that parses.
pub(crate) fn builtin_template(text: &str) -> Vec<Part> {
    template(text).unwrap_or_else(|reason| unreachable!("built-in template {text:?}: {reason}"))
}

/// A key: an HMAC secret, keyed for each hash the schemes use (the format of a scheme's
/// header says which one its signatures are), or an Ed25519 key.
#[derive(Clone)]
pub(crate) enum Key {
    Hmac {
        sha256: Hmac<Sha256>,
        /// Boxed: few schemes use it, and the key stays small.
        sha1: Box<Hmac<Sha1>>,
    },
    #[cfg(feature = "ed25519")]
    Ed25519(Box<Ed25519Key>),
}

/// A public key, and the private key where the scheme signs too.
#[cfg(feature = "ed25519")]
#[derive(Clone)]
pub(crate) struct Ed25519Key {
    pub(crate) verifying: ed25519_dalek::VerifyingKey,
    pub(crate) signing: Option<ed25519_dalek::SigningKey>,
}

impl Key {
    pub(crate) fn hmac(key: &[u8]) -> Option<Self> {
        if key.is_empty() {
            return None;
        }
        Some(Key::Hmac {
            sha256: Hmac::new_from_slice(key).ok()?,
            sha1: Box::new(Hmac::new_from_slice(key).ok()?),
        })
    }

    /// An Ed25519 public key of these 32 bytes. A weak (small-order) key is refused: with
    /// one, a forged signature verifies for any body.
    #[cfg(feature = "ed25519")]
    pub(crate) fn ed25519_public(bytes: &[u8; 32]) -> Result<Self, super::InvalidSecret> {
        use super::{InvalidSecret, InvalidSecretKind};
        let verifying = ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map_err(|_| InvalidSecret::new(InvalidSecretKind::InvalidKey))?;
        if verifying.is_weak() {
            return Err(InvalidSecret::new(InvalidSecretKind::WeakKey));
        }
        Ok(Key::Ed25519(Box::new(Ed25519Key {
            verifying,
            signing: None,
        })))
    }

    /// An Ed25519 key that signs, from its 32-byte seed, and verifies with its public half.
    #[cfg(feature = "ed25519")]
    pub(crate) fn ed25519_signing(seed: &[u8; 32]) -> Self {
        let signing = ed25519_dalek::SigningKey::from_bytes(seed);
        Key::Ed25519(Box::new(Ed25519Key {
            verifying: signing.verifying_key(),
            signing: Some(signing),
        }))
    }

    /// Whether this key makes or checks signatures of `alg`.
    pub(crate) fn can(&self, alg: Alg) -> bool {
        match self {
            Key::Hmac { .. } => matches!(alg, Alg::HmacSha256 | Alg::HmacSha1),
            #[cfg(feature = "ed25519")]
            Key::Ed25519(_) => alg == Alg::Ed25519,
        }
    }
}

/// A signature found in the header, decoded.
#[derive(Clone, Copy)]
pub(crate) struct Candidate {
    alg: Alg,
    bytes: [u8; 64],
}

/// The candidates of one header. The first four are kept in place: the usual header holds
/// one to three signatures, and a verification allocates nothing (`tests/allocations.rs`
/// holds it to 0 allocations; a `Vec` here would make it 1, about 20 ns of a 1 KiB
/// verification).
pub(crate) type Candidates = SmallVec<[Candidate; 4]>;

/// Adds a candidate of `alg` where `decode` writes its bytes and says they decoded. Each is
/// decoded where it stays: decoding writes a few bytes at a time, and a copy right after
/// would read them back in wider loads than the writes, which the processor cannot forward
/// from its store buffer (a stall of about 15 cycles per load).
pub(crate) fn add_candidate(
    candidates: &mut Candidates,
    alg: Alg,
    decode: impl FnOnce(&mut [u8]) -> bool,
) {
    candidates.push(Candidate {
        alg,
        bytes: [0; 64],
    });
    let decoded = candidates
        .last_mut()
        .is_some_and(|candidate| decode(&mut candidate.bytes[..alg.len()]));
    if !decoded {
        candidates.pop();
    }
}

/// What one delivery signed: the template's pieces over this delivery's values.
pub(crate) struct Signed<'a> {
    pub(crate) parts: &'a [Part],
    pub(crate) id: &'a [u8],
    pub(crate) timestamp: &'a [u8],
    pub(crate) body: &'a [u8],
}

impl Signed<'_> {
    /// Hands the signed content, piece by piece, to `sink`.
    pub(crate) fn feed(&self, mut sink: impl FnMut(&[u8])) {
        for part in self.parts {
            sink(match part {
                Part::Text(text) => text.as_bytes(),
                Part::Id => self.id,
                Part::Timestamp => self.timestamp,
                Part::Body => self.body,
            });
        }
    }

    pub(crate) fn mac(&self, key: &Hmac<Sha256>) -> [u8; 32] {
        let mut mac = key.clone();
        self.feed(|piece| mac.update(piece));
        mac.finalize().into_bytes().into()
    }

    fn mac_sha1(&self, key: &Hmac<Sha1>) -> [u8; 20] {
        let mut mac = key.clone();
        self.feed(|piece| mac.update(piece));
        mac.finalize().into_bytes().into()
    }

    /// Whether any candidate of `key`'s algorithm is its signature of this content. Each
    /// comparison is constant-time. Ed25519 checks draw on `ed25519_budget`, shared by every
    /// key of the delivery; none is made once it is spent.
    #[cfg_attr(not(feature = "ed25519"), allow(clippy::unused_self))]
    pub(crate) fn matches(
        &self,
        key: &Key,
        candidates: &Candidates,
        ed25519_budget: &mut usize,
    ) -> bool {
        let mut ours = candidates.iter().filter(|c| key.can(c.alg)).peekable();
        if ours.peek().is_none() {
            return false;
        }
        match key {
            Key::Hmac { sha256, sha1 } => {
                let _ = ed25519_budget;
                // Each MAC made once, when a candidate of its hash first needs it.
                let (mut long, mut short) = (None, None);
                ours.any(|candidate| match candidate.alg {
                    Alg::HmacSha256 => same_mac(
                        &candidate.bytes,
                        long.get_or_insert_with(|| self.mac(sha256)),
                    ),
                    Alg::HmacSha1 => {
                        let expected = short.get_or_insert_with(|| self.mac_sha1(sha1));
                        bool::from(candidate.bytes[..20].ct_eq(&expected[..]))
                    }
                    #[cfg(feature = "ed25519")]
                    Alg::Ed25519 => false,
                })
            }
            #[cfg(feature = "ed25519")]
            Key::Ed25519(key) => ours.any(|candidate| {
                if !strict_r(&candidate.bytes) || *ed25519_budget == 0 {
                    return false;
                }
                *ed25519_budget -= 1;
                let signature = ed25519_dalek::Signature::from_bytes(&candidate.bytes);
                let Ok(mut stream) = key.verifying.verify_stream(&signature) else {
                    return false;
                };
                self.feed(|piece| stream.update(piece));
                stream.finalize_and_verify().is_ok()
            }),
        }
    }

    // Only an Ed25519 public key cannot sign.
    #[cfg_attr(not(feature = "ed25519"), allow(clippy::unnecessary_wraps))]
    pub(crate) fn signature(&self, key: &Key, alg: Alg) -> Result<Vec<u8>, SignError> {
        match key {
            Key::Hmac { sha1, .. } if alg == Alg::HmacSha1 => Ok(self.mac_sha1(sha1).to_vec()),
            Key::Hmac { sha256, .. } => Ok(self.mac(sha256).to_vec()),
            #[cfg(feature = "ed25519")]
            Key::Ed25519(key) => {
                use ed25519_dalek::Signer as _;
                let signing = key
                    .signing
                    .as_ref()
                    .ok_or(SignError::new(SignErrorKind::NoSigningKey))?;
                let mut message = Vec::new();
                self.feed(|piece| message.extend_from_slice(piece));
                Ok(signing.sign(&message).to_bytes().to_vec())
            }
        }
    }
}

/// Whether the `R` half of an Ed25519 signature passes the strict checks that
/// `verify_strict` makes and the streamed verification skips: a point on the curve, not of
/// small order. (Weak public keys are refused when the scheme is built.)
#[cfg(feature = "ed25519")]
fn strict_r(signature: &[u8; 64]) -> bool {
    let mut r = [0u8; 32];
    r.copy_from_slice(&signature[..32]);
    // A verifying key is a decompressed point, and a weak one is of small order: the same
    // two checks, without another dependency.
    ed25519_dalek::VerifyingKey::from_bytes(&r).is_ok_and(|point| !point.is_weak())
}

/// Whether a candidate's first 32 bytes are `expected`, in constant time. Compared as four
/// words: `subtle` puts one optimisation barrier in each comparison, and 32 of them (one a
/// byte) cost about 20 ns of a 1 KiB verification, four of them nothing to speak of.
fn same_mac(candidate: &[u8; 64], expected: &[u8; 32]) -> bool {
    let words = |bytes: &[u8]| {
        let mut words = [0u64; 4];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut octets = [0u8; 8];
            octets.copy_from_slice(chunk);
            *word = u64::from_ne_bytes(octets);
        }
        words
    };
    bool::from(words(&candidate[..32]).ct_eq(&words(expected)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "ed25519")]
    #[test]
    fn small_order_r_is_refused_before_hashing() {
        let mut identity = [0u8; 64];
        identity[0] = 1;
        assert!(!strict_r(&identity), "R = identity");
        let mut not_on_curve = [0u8; 64];
        not_on_curve[0] = 2;
        assert!(!strict_r(&not_on_curve), "x^2 has no root for y = 2");
        let signing = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let signature = ed25519_dalek::Signer::sign(&signing, b"m").to_bytes();
        assert!(strict_r(&signature), "a real signature's R");
    }

    #[test]
    fn candidates_keep_what_decoded_in_order_past_the_inline_four() {
        let mut candidates = Candidates::new();
        for n in 0..9u8 {
            // Every third fails to decode, after writing into its place.
            add_candidate(&mut candidates, Alg::HmacSha256, |out| {
                out.fill(n);
                n % 3 != 2
            });
        }
        let kept: Vec<u8> = candidates.iter().map(|c| c.bytes[0]).collect();
        assert_eq!(kept, [0, 1, 3, 4, 6, 7]);
        assert!(candidates.iter().all(|c| c.bytes[32..] == [0; 32]));
        assert!(Candidates::new().is_empty());
    }

    #[test]
    fn macs_compare_every_word() {
        let expected = [7u8; 32];
        let mut candidate = [7u8; 64];
        assert!(same_mac(&candidate, &expected));
        for at in [0, 7, 8, 31] {
            candidate[at] ^= 1;
            assert!(!same_mac(&candidate, &expected), "byte {at}");
            candidate[at] ^= 1;
        }
        candidate[32] = 0;
        assert!(
            same_mac(&candidate, &expected),
            "only the first 32 bytes count"
        );
    }

    #[test]
    fn templates() {
        assert_eq!(
            template("v0:{timestamp}:{body}").unwrap(),
            vec![
                Part::Text("v0:".into()),
                Part::Timestamp,
                Part::Text(":".into()),
                Part::Body
            ]
        );
        assert_eq!(template("{body}").unwrap(), vec![Part::Body]);
        assert!(template("{timestamp}.").is_err());
        assert!(template("{body}{body}").is_err());
        assert!(template("{nonce}.{body}").is_err());
        assert!(template("{body").is_err());
    }
}
