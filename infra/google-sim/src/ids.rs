//! Deterministic ids in Google's shapes, derived from a stable hash: the same
//! calls in the same order give the same ids in every run.

/// SplitMix64: a small, stable pseudo-random generator (the `rand` crate's
/// generators may change between versions; generated directories must not).
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability 1/n.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// FNV-1a, for seeding from strings.
pub(crate) fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

const ALNUM: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

fn alnum(rng: &mut SplitMix64, len: usize) -> String {
    (0..len)
        .map(|_| ALNUM[rng.below(ALNUM.len() as u64) as usize] as char)
        .collect()
}

fn digits(rng: &mut SplitMix64, len: usize) -> String {
    (0..len)
        .map(|_| char::from(b'0' + rng.below(10) as u8))
        .collect()
}

/// A customer id like `C01abc234`: `C0` and 7 characters.
pub(crate) fn customer_id(domain: &str, salt: u64) -> String {
    let mut rng = SplitMix64::new(fnv(&domain.to_ascii_lowercase()) ^ salt);
    format!("C0{}", alnum(&mut rng, 7))
}

/// A 21-digit numeric user id, like Google's.
pub(crate) fn user_id(customer: &str, n: u64) -> String {
    let mut rng = SplitMix64::new(fnv(customer) ^ n.wrapping_mul(0x2545_F491_4F6C_DD1D));
    format!("1{}", digits(&mut rng, 20))
}

/// A 15-character group id starting with `0`, like Google's.
pub(crate) fn group_id(customer: &str, n: u64) -> String {
    let mut rng = SplitMix64::new(fnv(customer) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 1);
    format!("0{}", alnum(&mut rng, 14))
}
