//! Support for the Viceroy suites and the request benchmark, one role per file: `origin`
//! (a loopback HTTP origin), `viceroy` (`viceroy serve` processes and a client for them),
//! `ports` (loopback ports, and which process listens on one), `fixtures` (images),
//! `faults` (an origin that fails on purpose), `reference` (our decoders against a
//! reference decoder's pixels).

// Each suite and the benchmark use a different part of it.
#![allow(dead_code, unused_imports)]

// Raw sockets: the suites run natively (the request benchmark shares this module).
#[cfg(not(target_arch = "wasm32"))]
pub mod faults;
pub mod fixtures;
pub mod origin;
pub mod ports;
pub mod reference;
pub mod viceroy;

pub use fixtures::{assert_all_agree, encode, fidelity_image, repo, run_reference};
pub use origin::{pattern_byte, Body, Origin, Received, Resource};
pub use viceroy::{Framing, Reply, Service, Siblings, SIBLING_KEY};

/// The five class probabilities of an `x-moderation-scores` value, in class order.
pub fn probabilities(scores: &str) -> Vec<f32> {
    scores
        .split(',')
        .map(|pair| {
            pair.split_once('=')
                .expect("class=value")
                .1
                .parse()
                .expect("a number")
        })
        .collect()
}
