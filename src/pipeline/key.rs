//! The key a delivery is claimed under: namespaced, injective and bounded in length.
//!
//! `{namespace}:{tag}:{rest}`, where the namespace is the layer's name with `%` and `:`
//! escaped (so the first `:` always ends it), and the tag says how the rest is built:
//!
//! | tag | rest | when |
//! | --- | --- | --- |
//! | `i` | the id as it came | short id, the body is not covered |
//! | `h` | hex SHA-256 of the id | long id, the body is not covered |
//! | `ib` | hex SHA-256 of the body, `:`, the id | short id, the body is covered |
//! | `hb` | hex SHA-256 of the body, `:`, hex SHA-256 of the id | long id, the body is covered |
//!
//! Each form is read back one way (the hashes have a fixed length), and the forms differ in
//! their tag, so two different deliveries never share a key (short of a SHA-256 collision).

use std::borrow::Cow;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// Ids longer than this many bytes are stored as their SHA-256: an id an attacker chooses
/// (an unsigned header) must not grow the store.
pub(crate) const MAX_RAW_ID: usize = 128;

/// `s` with `%` and `:` percent-escaped, so that it can stand before a `:` separator and
/// no two different values give the same text.
pub(crate) fn escape_segment(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', ':']) {
        return Cow::Borrowed(s);
    }
    let mut escaped = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '%' => escaped.push_str("%25"),
            ':' => escaped.push_str("%3A"),
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

/// The key of a delivery identified by `id` under `namespace` (escaped already); with
/// `body`, the key covers a hash of it too. One allocation: the key is built on the stack
/// and copied once into its `Arc`.
pub(crate) fn dedup_key(namespace: &str, id: &str, body: Option<&[u8]>) -> Arc<str> {
    let long = id.len() > MAX_RAW_ID;
    let tag = match (long, body.is_some()) {
        (false, false) => "i",
        (true, false) => "h",
        (false, true) => "ib",
        (true, true) => "hb",
    };
    let mut body_hex = [0u8; 64];
    let body_hex = match body {
        Some(body) => hex_digest(&mut body_hex, body),
        None => "",
    };
    let mut id_hex = [0u8; 64];
    let id = if long {
        hex_digest(&mut id_hex, id.as_bytes())
    } else {
        id
    };
    let pieces = [
        namespace,
        ":",
        tag,
        ":",
        body_hex,
        if body.is_some() { ":" } else { "" },
        id,
    ];
    concat_shared(&pieces)
}

/// The hex SHA-256 of `data`, written into `out`.
fn hex_digest<'a>(out: &'a mut [u8; 64], data: &[u8]) -> &'a str {
    // A 32-byte digest always fits 64 hex digits, which are UTF-8.
    if hex::encode_to_slice(Sha256::digest(data), out).is_err() {
        return "";
    }
    std::str::from_utf8(out).unwrap_or_default()
}

/// `pieces` joined into one shared string, with one allocation where they fit the stack
/// buffer (every key but those of very long layer names).
fn concat_shared(pieces: &[&str]) -> Arc<str> {
    const STACK: usize = 512;
    let len: usize = pieces.iter().map(|piece| piece.len()).sum();
    if len > STACK {
        return Arc::from(pieces.concat());
    }
    let mut buf = [0u8; STACK];
    let mut at = 0;
    for piece in pieces {
        buf[at..at + piece.len()].copy_from_slice(piece.as_bytes());
        at += piece.len();
    }
    // Whole `str`s, joined: UTF-8.
    Arc::from(std::str::from_utf8(&buf[..len]).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_escape_their_separator() {
        assert_eq!(escape_segment("github"), "github");
        assert_eq!(escape_segment("a:b"), "a%3Ab");
        assert_eq!(escape_segment("50%:"), "50%25%3A");
        // "a%3Ab" as a name must not read as "a:b" escaped.
        assert_ne!(escape_segment("a%3Ab"), escape_segment("a:b"));
    }

    #[test]
    fn forms_differ_and_are_bounded() {
        let short = dedup_key("ns", "evt_1", None);
        assert_eq!(&*short, "ns:i:evt_1");
        let long_id = "x".repeat(300 * 1024);
        let long = dedup_key("ns", &long_id, None);
        assert_eq!(long.len(), "ns:h:".len() + 64);
        let covered = dedup_key("ns", "evt_1", Some(b"body"));
        assert!(covered.starts_with("ns:ib:"), "{covered}");
        assert!(covered.ends_with(":evt_1"), "{covered}");
        assert_ne!(covered, dedup_key("ns", "evt_1", Some(b"other body")));
        let both = dedup_key("ns", &long_id, Some(b"body"));
        assert_eq!(both.len(), "ns:hb:".len() + 64 + 1 + 64);
        // An id that spells out another form's text stays in its own form.
        let hashed_text = &long[5..];
        assert_ne!(dedup_key("ns", hashed_text, None), long);
    }

    #[test]
    fn a_name_too_long_for_the_stack_buffer() {
        let name = "n".repeat(600);
        let key = dedup_key(&name, "evt_1", Some(b"body"));
        assert!(key.starts_with(&format!("{name}:ib:")), "{key}");
        assert!(key.ends_with(":evt_1"), "{key}");
        assert_eq!(key.len(), 600 + ":ib:".len() + 64 + 1 + "evt_1".len());
    }

    #[test]
    fn namespaces_keep_apart() {
        assert_ne!(
            dedup_key(&escape_segment("a:b"), "c", None),
            dedup_key(&escape_segment("a"), "b:c", None)
        );
    }
}
