//! Client-side encryption of repo objects (AES-256-GCM), optional.
//!
//! With a key configured, every object the repo writes is sealed before it leaves the
//! process, and every object it reads must be sealed with that key. A sealed object:
//!
//! ```text
//! [0,4)    magic "MPTE"
//! [4]      version 1
//! [5,8)    zero
//! [8,12)   key check: the first 4 bytes of the GCM tag of an empty message under the
//!          key, nonce 0 and associated data "metapitr key check" (tells a wrong key
//!          from damage without revealing the key)
//! [12,24)  nonce (96 bits, random per object)
//! [24,n)   ciphertext of the object (the zstd frame), then the 16-byte GCM tag
//! ```
//!
//! The associated data is bytes [0,24) followed by the object's key in the repo, so an
//! object moved to another key, or a header changed, fails authentication. GCM's tag
//! covers every byte: a flipped bit anywhere is detected.
//!
//! The key is 32 bytes, given as 64 hex digits in `METAPITR_ENCRYPTION_KEY` or in a file
//! (`--encryption-key-file`, `[backup] encryption_key_file`).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use crate::error::{Error, Result};

pub const MAGIC: [u8; 4] = *b"MPTE";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 24;
pub const TAG_LEN: usize = 16;

/// A repo's encryption key. Its bytes never appear in `Debug` output.
#[derive(Clone)]
pub struct Key {
    cipher: Aes256Gcm,
    check: [u8; 4],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key(check {})", hex::encode(self.check))
    }
}

impl PartialEq for Key {
    fn eq(&self, o: &Self) -> bool {
        self.check == o.check
    }
}

impl Eq for Key {}

impl Key {
    pub fn from_bytes(bytes: &[u8; 32]) -> Key {
        let cipher = Aes256Gcm::new(bytes.into());
        let tag = cipher
            .encrypt(
                Nonce::from_slice(&[0u8; 12]),
                Payload {
                    msg: b"",
                    aad: b"metapitr key check",
                },
            )
            .unwrap_or_default();
        let mut check = [0u8; 4];
        if tag.len() >= 4 {
            check.copy_from_slice(&tag[..4]);
        }
        Key { cipher, check }
    }

    /// A key from 64 hex digits (surrounding whitespace ignored). `source` names where it
    /// came from, for the error; the text itself is never echoed.
    pub fn from_hex(text: &str, source: &str) -> Result<Key> {
        let bad = || {
            Error::invalid_input(format!(
                "the encryption key in {source} is not 64 hex digits (32 bytes); generate one \
                 with e.g. `openssl rand -hex 32`"
            ))
        };
        let bytes = hex::decode(text.trim()).map_err(|_| bad())?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        Ok(Key::from_bytes(&arr))
    }

    /// The key in the file at `path`.
    pub fn from_file(path: &std::path::Path) -> Result<Key> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::invalid_input(format!(
                "encryption key file {}: {e}; check --encryption-key-file, \
                 METAPITR_ENCRYPTION_KEY_FILE or [backup] encryption_key_file",
                path.display()
            ))
        })?;
        Key::from_hex(&text, &path.display().to_string())
    }

    pub fn check(&self) -> [u8; 4] {
        self.check
    }

    /// Seals `plain` as the object stored at `key`.
    pub fn seal(&self, object_key: &str, plain: &[u8]) -> Result<Vec<u8>> {
        let mut header = [0u8; HEADER_LEN];
        header[0..4].copy_from_slice(&MAGIC);
        header[4] = VERSION;
        header[8..12].copy_from_slice(&self.check);
        let nonce: [u8; 12] = rand::random();
        header[12..24].copy_from_slice(&nonce);
        let aad = [&header[..], object_key.as_bytes()].concat();
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::internal(format!("cannot encrypt {object_key}")))?;
        let mut out = Vec::with_capacity(HEADER_LEN + ct.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens the object stored at `key`.
    pub fn open(&self, object_key: &str, data: &[u8]) -> Result<Vec<u8>> {
        if !is_sealed(data) {
            return Err(Error::invalid_input(format!(
                "object {object_key} is not encrypted, but an encryption key is configured; \
                 this repo was written without encryption (drop the key to read it), or the \
                 object was replaced behind metapitr's back"
            )));
        }
        if data.len() < HEADER_LEN + TAG_LEN {
            return Err(Error::corrupt(
                object_key,
                data.len() as u64,
                "encrypted object is shorter than its header and tag",
            ));
        }
        if data[4] != VERSION {
            return Err(Error::corrupt(
                object_key,
                4,
                format!("encryption version {} is not supported", data[4]),
            ));
        }
        if data[8..12] != self.check {
            return Err(Error::invalid_input(format!(
                "object {object_key} was encrypted with a different key (key check {}, the \
                 configured key's is {}); give the key the repo was written with",
                hex::encode(&data[8..12]),
                hex::encode(self.check)
            )));
        }
        let aad = [&data[..HEADER_LEN], object_key.as_bytes()].concat();
        self.cipher
            .decrypt(
                Nonce::from_slice(&data[12..24]),
                Payload {
                    msg: &data[HEADER_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| {
                Error::corrupt(
                    object_key,
                    HEADER_LEN as u64,
                    "authentication failed: the encrypted object is damaged or was moved",
                )
            })
    }
}

/// Whether stored bytes are a sealed object.
pub fn is_sealed(data: &[u8]) -> bool {
    data.len() >= 4 && data[0..4] == MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn seal_open_and_every_flipped_byte_is_detected() {
        let k = Key::from_bytes(&[7u8; 32]);
        let sealed = k.seal("wal/1/x", b"hello, metadata").unwrap();
        assert_eq!(k.open("wal/1/x", &sealed).unwrap(), b"hello, metadata");
        for i in 0..sealed.len() {
            let mut d = sealed.clone();
            d[i] ^= 0x20;
            assert!(k.open("wal/1/x", &d).is_err(), "byte {i}");
        }
        let moved = k.open("wal/1/y", &sealed).unwrap_err();
        assert_eq!(moved.kind(), ErrorKind::Corruption);
        let other = Key::from_bytes(&[8u8; 32]);
        let e = other.open("wal/1/x", &sealed).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("different key"), "{e}");
        let e = k.open("wal/1/x", b"plain bytes").unwrap_err();
        assert!(e.to_string().contains("not encrypted"), "{e}");
    }

    #[test]
    fn keys_parse_from_hex_and_never_print() {
        let hexkey = "00".repeat(31) + "ff";
        let k = Key::from_hex(&format!("  {hexkey}\n"), "env").unwrap();
        assert!(!format!("{k:?}").contains(&hexkey));
        let e = Key::from_hex("abc", "METAPITR_ENCRYPTION_KEY").unwrap_err();
        assert!(e.to_string().contains("64 hex digits") && !e.to_string().contains("abc"));
    }
}
