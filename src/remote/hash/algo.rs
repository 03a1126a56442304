//! The hash algorithms a server may compute, and the same ones computed here (of the bytes a
//! mount sends, and of local copies for `sftpfs verify --against`).

use sha2::Digest as _;

/// An algorithm, by the name the xattrs, the `check-file` extension and the log use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algo {
    Sha256,
    Sha1,
    Md5,
    Sha512,
    Blake2b,
    Sha224,
    Sha384,
}

impl Algo {
    /// Every algorithm, best first: the one `verify_writes` and `sftpfs verify` use is the
    /// first the server can compute.
    pub const ALL: [Algo; 7] = [
        Algo::Sha256,
        Algo::Sha512,
        Algo::Blake2b,
        Algo::Sha384,
        Algo::Sha224,
        Algo::Sha1,
        Algo::Md5,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Algo::Md5 => "md5",
            Algo::Sha1 => "sha1",
            Algo::Sha224 => "sha224",
            Algo::Sha256 => "sha256",
            Algo::Sha384 => "sha384",
            Algo::Sha512 => "sha512",
            Algo::Blake2b => "blake2b",
        }
    }

    pub fn from_name(name: &[u8]) -> Option<Algo> {
        Algo::ALL.into_iter().find(|a| a.name().as_bytes() == name)
    }

    /// Length of a digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Algo::Md5 => 16,
            Algo::Sha1 => 20,
            Algo::Sha224 => 28,
            Algo::Sha256 => 32,
            Algo::Sha384 => 48,
            Algo::Sha512 | Algo::Blake2b => 64,
        }
    }

    pub fn hasher(self) -> Hasher {
        match self {
            Algo::Md5 => Hasher::Md5(Box::new(md5::Context::new())),
            Algo::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Algo::Sha224 => Hasher::Sha224(sha2::Sha224::new()),
            Algo::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algo::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            Algo::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
            Algo::Blake2b => Hasher::Blake2b(Box::default()),
        }
    }

    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        let mut h = self.hasher();
        h.update(data);
        h.finish()
    }
}

impl std::fmt::Display for Algo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A running hash of one algorithm.
#[derive(Clone)]
pub enum Hasher {
    Md5(Box<md5::Context>),
    Sha1(sha1::Sha1),
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
    Blake2b(Box<blake2::Blake2b512>),
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Md5(h) => h.consume(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha224(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
            Hasher::Blake2b(h) => blake2::Digest::update(h.as_mut(), data),
        }
    }

    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Md5(h) => h.finalize().0.to_vec(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha224(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha384(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
            Hasher::Blake2b(h) => blake2::Digest::finalize(*h).to_vec(),
        }
    }
}

/// Lower-case hex, as `sha256sum` prints digests.
pub fn hex(digest: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(digest.len() * 2);
    for b in digest {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The bytes of a hex digest of `algo` (upper or lower case), if that is what `text` is.
pub fn unhex(algo: Algo, text: &[u8]) -> Option<Vec<u8>> {
    if text.len() != algo.digest_len() * 2 {
        return None;
    }
    text.chunks(2)
        .map(|p| {
            let s = std::str::from_utf8(p).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_of_abc_are_the_published_ones() {
        let want = [
            (Algo::Md5, "900150983cd24fb0d6963f7d28e17f72"),
            (Algo::Sha1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (
                Algo::Sha224,
                "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7",
            ),
            (
                Algo::Sha256,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                Algo::Sha384,
                "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
                 8086072ba1e7cc2358baeca134c825a7",
            ),
            (
                Algo::Sha512,
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
                 2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            ),
            (
                Algo::Blake2b,
                "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1\
                 7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923",
            ),
        ];
        for (a, hexed) in want {
            let d = a.digest(b"abc");
            assert_eq!(d.len(), a.digest_len(), "{a}");
            assert_eq!(hex(&d), hexed, "{a}");
            assert_eq!(unhex(a, hexed.to_uppercase().as_bytes()), Some(d), "{a}");
            assert_eq!(Algo::from_name(a.name().as_bytes()), Some(a));
        }
        // Fed in pieces: the same.
        let mut h = Algo::Sha256.hasher();
        h.update(b"a");
        let copy = h.clone();
        h.update(b"bc");
        assert_eq!(h.finish(), Algo::Sha256.digest(b"abc"));
        assert_eq!(copy.finish(), Algo::Sha256.digest(b"a"));
        assert_eq!(unhex(Algo::Md5, b"xyz"), None);
        assert_eq!(unhex(Algo::Md5, &[b'g'; 32]), None);
    }
}
