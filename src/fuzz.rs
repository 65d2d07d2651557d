// SPDX-License-Identifier: MPL-2.0
//! Seeded random inputs for the parsers' property tests (cargo-fuzz needs a
//! nightly toolchain, which this project's machines do not have). The case
//! count comes from EDGEGUARD_FUZZ_CASES so `make fuzz` can run a longer
//! campaign than `make test`.

/// xorshift64*: small, fast, and reproducible from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Mutates `base`: byte flips, insertions of `tokens`, deletions, truncation.
    pub fn mutate(&mut self, base: &[u8], tokens: &[&str]) -> Vec<u8> {
        let mut data = base.to_vec();
        for _ in 0..1 + self.below(8) {
            match self.below(5) {
                0 if !data.is_empty() => {
                    let i = self.below(data.len());
                    data[i] = self.next() as u8;
                }
                1 => {
                    let token = tokens[self.below(tokens.len())].as_bytes();
                    let i = self.below(data.len() + 1);
                    data.splice(i..i, token.iter().copied());
                }
                2 if !data.is_empty() => {
                    let i = self.below(data.len());
                    let j = (i + self.below(64)).min(data.len());
                    data.drain(i..j);
                }
                3 => data.truncate(self.below(data.len() + 1)),
                _ => {
                    let n = self.below(32);
                    data.extend((0..n).map(|_| self.next() as u8));
                }
            }
        }
        data
    }
}

/// How many cases each property test runs.
pub fn cases(default: usize) -> usize {
    std::env::var("EDGEGUARD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Prints what a campaign did, for `make fuzz`.
pub fn report(name: &str, cases: usize, started: std::time::Instant) {
    eprintln!(
        "fuzz {name}: {cases} cases in {:.2} s",
        started.elapsed().as_secs_f64()
    );
}
