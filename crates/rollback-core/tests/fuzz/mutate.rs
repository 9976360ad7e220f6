//! Bounded mutation fuzzing that runs as an ordinary `#[test]`.
//!
//! Each run mutates valid seed inputs (bit flips, byte changes, insertions of
//! bytes and of syntax tokens, deletions, splices of seed fragments, repeated
//! chunks, ranges nested in brackets) and hands every input to a target
//! closure. A target fails the test
//! by panicking, by taking longer than [`MAX_TIME`] on one input, or by
//! breaking a property it asserts itself; the failure names the input
//! (hex-escaped, as a Rust byte string to paste into a regression test) and
//! the seed that reproduces the run.
//!
//! Environment:
//! - `ROLLBACK_FUZZ_ITERATIONS`: inputs per target (default: the target's own);
//! - `ROLLBACK_FUZZ_SEED`: the PRNG seed (default: fixed per target, so the
//!   suite is deterministic; set it to explore further).
//!
//! To fuzz the parsers of another crate, declare this file by its path
//! rather than copying it (rollback-prometheus's `tests/fuzz.rs` has
//! `#[path = "../../rollback-core/tests/fuzz/mutate.rs"] mod mutate;`),
//! add `fastrand` to that crate's dev-dependencies (all this file needs),
//! and call [`fuzz`] with seeds, tokens and a target.
#![allow(dead_code)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

/// The longest one input may take. A slower input is run twice more, and
/// fails the test if the fastest of the three runs is still slower (a busy
/// machine can pause one run, not three).
pub(crate) const MAX_TIME: Duration = Duration::from_millis(250);

/// The longest input the mutator makes.
pub(crate) const MAX_LEN: usize = 128 * 1024;

/// What a run does: how many inputs, from which PRNG seed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    /// Mutated inputs, the seeds themselves not counted.
    pub iterations: u64,
    /// The PRNG seed.
    pub seed: u64,
}

impl Run {
    /// `default_iterations` and a seed derived from `name`, unless the
    /// environment says otherwise.
    pub(crate) fn from_env(name: &str, default_iterations: u64) -> Run {
        let var = |key: &str| {
            std::env::var(key).ok().map(|v| {
                v.trim()
                    .parse::<u64>()
                    .unwrap_or_else(|_| panic!("{key}={v:?} is not a whole number"))
            })
        };
        Run {
            iterations: var("ROLLBACK_FUZZ_ITERATIONS").unwrap_or(default_iterations),
            seed: var("ROLLBACK_FUZZ_SEED").unwrap_or_else(|| fnv1a(name.as_bytes())),
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Makes inputs by mutating seeds.
#[derive(Debug)]
pub(crate) struct Mutator<'a> {
    rng: fastrand::Rng,
    seeds: &'a [&'a [u8]],
    tokens: &'a [&'a [u8]],
}

impl<'a> Mutator<'a> {
    /// A mutator of `seeds` (at least one) that also inserts `tokens`
    /// (syntax of the input language: `"[", "\": \"", "#"`), from `seed`.
    pub(crate) fn new(seed: u64, seeds: &'a [&'a [u8]], tokens: &'a [&'a [u8]]) -> Self {
        assert!(!seeds.is_empty(), "a mutator needs at least one seed");
        Mutator {
            rng: fastrand::Rng::with_seed(seed),
            seeds,
            tokens,
        }
    }

    /// The next input: a seed, mutated one to eight times (mostly few).
    pub(crate) fn input(&mut self) -> Vec<u8> {
        let mut data = self.seeds[self.rng.usize(..self.seeds.len())].to_vec();
        let rounds = match self.rng.u8(..8) {
            0..=3 => 1,
            4 | 5 => 2,
            6 => 4,
            _ => 8,
        };
        for _ in 0..rounds {
            self.mutate(&mut data);
        }
        data.truncate(MAX_LEN);
        data
    }

    fn position(&mut self, data: &[u8]) -> usize {
        self.rng.usize(..=data.len())
    }

    /// A range of `data` of at most `max` bytes (empty if `data` is).
    fn range(&mut self, data: &[u8], max: usize) -> std::ops::Range<usize> {
        let start = self.rng.usize(..=data.len());
        let len = self.rng.usize(..=max.min(data.len() - start));
        start..start + len
    }

    fn token(&mut self) -> Vec<u8> {
        if self.tokens.is_empty() || self.rng.u8(..4) == 0 {
            vec![self.rng.u8(..)]
        } else {
            self.tokens[self.rng.usize(..self.tokens.len())].to_vec()
        }
    }

    fn mutate(&mut self, data: &mut Vec<u8>) {
        match self.rng.u8(..9) {
            // Flip one bit.
            0 if !data.is_empty() => {
                let i = self.rng.usize(..data.len());
                data[i] ^= 1 << self.rng.u8(..8);
            }
            // Overwrite one byte with a byte that means something.
            1 if !data.is_empty() => {
                let i = self.rng.usize(..data.len());
                data[i] = *self
                    .rng
                    .choice(b"\0\t\n\r \"#'*,-.:[\\]{|}\x7f\x80\xff0123456789")
                    .expect("not empty");
            }
            // Insert a token or a byte.
            2 | 3 => {
                let at = self.position(data);
                let token = self.token();
                data.splice(at..at, token);
            }
            // Delete a few bytes.
            4 => {
                let r = self.range(data, 16);
                data.drain(r);
            }
            // Splice in a fragment of a seed, inserted or overwriting.
            5 => {
                let seed = self.seeds[self.rng.usize(..self.seeds.len())];
                let fragment = seed[self.range(seed, 64)].to_vec();
                let overwrite = if self.rng.bool() { 64 } else { 0 };
                let at = self.range(data, overwrite);
                data.splice(at, fragment);
            }
            // Repeat a chunk: nesting, long lines, many fields.
            6 => {
                let r = self.range(data, 24);
                let times = match self.rng.u8(..4) {
                    0 => self.rng.usize(2..=1000),
                    _ => self.rng.usize(2..=80),
                };
                let chunk = data[r.clone()].to_vec();
                let repeated = chunk.repeat(times.min(MAX_LEN / chunk.len().max(1)));
                data.splice(r.end..r.end, repeated);
            }
            // Nest a range in brackets, deeply at times.
            7 => {
                let (open, close) = *self
                    .rng
                    .choice(&[(b'[', b']'), (b'{', b'}'), (b'(', b')')])
                    .expect("not empty");
                let r = self.range(data, 64);
                let depth = match self.rng.u8(..4) {
                    0 => self.rng.usize(1..=1000),
                    _ => self.rng.usize(1..=80),
                }
                .min(MAX_LEN / 2);
                data.splice(r.end..r.end, std::iter::repeat_n(close, depth));
                data.splice(r.start..r.start, std::iter::repeat_n(open, depth));
            }
            // Duplicate a whole line, or cut the input short.
            _ => {
                if self.rng.bool() {
                    let at = self.position(data);
                    let start = data[..at]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |i| i + 1);
                    let end = data[at..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(data.len(), |i| at + i + 1);
                    let line = data[start..end].to_vec();
                    data.splice(start..start, line);
                } else {
                    let at = self.position(data);
                    data.truncate(at);
                }
            }
        }
    }
}

/// `bytes` as a Rust byte-string literal: printable ASCII as is, the rest
/// `\xNN`, long inputs elided in the middle.
pub(crate) fn escape(bytes: &[u8]) -> String {
    const SHOWN: usize = 4096;
    let mut out = String::from("b\"");
    let push = |out: &mut String, part: &[u8]| {
        for &b in part {
            match b {
                b'"' => out.push_str("\\\""),
                b'\\' => out.push_str("\\\\"),
                b'\n' => out.push_str("\\n"),
                b' '..=b'~' => out.push(char::from(b)),
                _ => out.push_str(&format!("\\x{b:02x}")),
            }
        }
    };
    if bytes.len() <= SHOWN {
        push(&mut out, bytes);
    } else {
        push(&mut out, &bytes[..SHOWN / 2]);
        out.push_str(&format!(
            "\" /* {} bytes elided */ b\"",
            bytes.len() - SHOWN
        ));
        push(&mut out, &bytes[bytes.len() - SHOWN / 2..]);
    }
    out.push('"');
    out
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".into())
}

/// What a finished run did, for the test's output.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    /// Inputs run, seeds included.
    pub inputs: u64,
    /// The whole run.
    pub elapsed: Duration,
    /// The time of the slowest input.
    pub slowest: Duration,
    /// The slowest input.
    pub slowest_input: Vec<u8>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = &self.slowest_input[..self.slowest_input.len().min(120)];
        write!(
            f,
            "{} inputs in {:.1?}, the slowest in {:.1?} ({} bytes: {}{})",
            self.inputs,
            self.elapsed,
            self.slowest,
            self.slowest_input.len(),
            escape(shown),
            if shown.len() < self.slowest_input.len() {
                "…"
            } else {
                ""
            }
        )
    }
}

/// Run `target` on each seed, then on `default_iterations` mutated inputs
/// (see [`Run::from_env`]). Panics, naming the input and the seed, if the
/// target panics or takes longer than [`MAX_TIME`] on one input.
pub(crate) fn fuzz(
    name: &str,
    default_iterations: u64,
    seeds: &[&[u8]],
    tokens: &[&[u8]],
    mut target: impl FnMut(&[u8]),
) -> Summary {
    let run = Run::from_env(name, default_iterations);
    let mut mutator = Mutator::new(run.seed, seeds, tokens);
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut slowest_input = Vec::new();
    let inputs = seeds
        .iter()
        .map(|s| s.to_vec())
        .chain((0..run.iterations).map(|_| mutator.input()));
    let mut count = 0;
    for (n, input) in inputs.enumerate() {
        count += 1;
        let fail = |what: String| -> ! {
            panic!(
                "fuzz {name}: input {n} {what}\n  reproduce with ROLLBACK_FUZZ_SEED={} ROLLBACK_FUZZ_ITERATIONS={}\n  input ({} bytes): {}",
                run.seed,
                run.iterations,
                input.len(),
                escape(&input)
            )
        };
        let mut fastest = Duration::MAX;
        for _attempt in 0..3 {
            let t = Instant::now();
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| target(&input))) {
                fail(format!("panicked: {}", panic_message(&*payload)));
            }
            fastest = fastest.min(t.elapsed());
            if fastest <= MAX_TIME {
                break;
            }
        }
        if fastest > MAX_TIME {
            fail(format!(
                "took {fastest:?} (at best of 3 runs), more than {MAX_TIME:?}"
            ));
        }
        if fastest > slowest {
            slowest = fastest;
            slowest_input.clone_from(&input);
        }
    }
    Summary {
        inputs: count,
        elapsed: started.elapsed(),
        slowest,
        slowest_input,
    }
}
