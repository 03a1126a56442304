//! The seeded random source and the environment knobs (`FSX_SEED`, `FSX_OPS`, `FSX_SKIP`).

use std::collections::BTreeSet;

/// xorshift64*: small, fast, and the same sequence everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<T: Clone>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize].clone()
    }
}

pub fn seed_from_env(default: u64) -> u64 {
    match std::env::var("FSX_SEED") {
        Ok(s) if s == "random" => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
        Ok(s) => s.parse().expect("FSX_SEED: a number or `random`"),
        Err(_) => default,
    }
}

pub fn ops_from_env(default: usize) -> usize {
    std::env::var("FSX_OPS")
        .ok()
        .map(|s| s.parse().expect("FSX_OPS: a number"))
        .unwrap_or(default)
}

/// The operation families that exist, for `FSX_SKIP`.
pub const FAMILIES: &[&str] = &[
    "cfr",
    "cfr_same",
    "links",
    "mtime",
    "nlink",
    "meta",
    "chown",
    "append",
    "mmap",
    "mmap_append",
    "ns",
    "huge",
    "otrunc",
    "unlinked",
];

/// `FSX_SKIP=mtime,links`: families switched off (for diagnosis); without it, `default`.
pub fn skip_from_env(default: &[&str]) -> BTreeSet<String> {
    let mut skip: BTreeSet<String> = default.iter().map(|f| f.to_string()).collect();
    if let Ok(s) = std::env::var("FSX_SKIP") {
        skip.clear();
        for f in s.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            assert!(
                FAMILIES.contains(&f),
                "FSX_SKIP: unknown family {f:?}; known: {FAMILIES:?}"
            );
            skip.insert(f.to_string());
        }
    }
    skip
}
