//! The verdict cache, in Fastly's Core Cache: a verdict (and for a rewrite, the obscured
//! image) stored under a key that digests the image bytes, the policy's fingerprint and
//! the model's identity (`edge_moderation::moderation::record`). A hit costs a hash and a
//! lookup: no decode, no inference. Cache failures are misses, never errors: the image
//! is judged again. The PDQ lists are not in the key: a hit is checked against them as
//! they are now (with the PDQ hashes the record keeps), so a list change applies at once.

use super::{known, model};
use edge_moderation::moderation::record::{self, CacheKey, ContentHash};
use edge_moderation::moderation::with_lists;
use edge_moderation::moderation::Moderation;
use edge_moderation::policy::Policy;
use fastly::cache::core;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// What the cache did for one image; reported in `x-moderation-cache`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Status {
    /// Found: `lookup` is what hashing and the lookup cost.
    Hit {
        lookup: Duration,
    },
    Miss,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Hit { .. } => "hit",
            Status::Miss => "miss",
        }
    }
}

/// The remembered verdict for the image with digest `content`, if there is one (an image
/// about to be sent to a sibling need not be).
pub fn remembered(content: &ContentHash, policy: &Policy) -> Option<(Moderation, Status)> {
    let ttl = policy.cache.ttl_seconds;
    let model = model::identity().filter(|_| ttl > 0)?;
    let started = Instant::now();
    let key = CacheKey::for_content(content, policy.fingerprint(), model);
    let found = with_lists(lookup(&key)?, &known::lists(policy));
    let status = Status::Hit {
        lookup: started.elapsed(),
    };
    Some((found, status))
}

/// The verdict for the image with digest `content`: remembered, or made by `judge` and
/// remembered. `None` for the status when the policy turns the cache off or the model is
/// unavailable (no identity).
pub fn judged(
    content: &ContentHash,
    policy: &Policy,
    judge: impl FnOnce() -> Moderation,
) -> (Moderation, Option<Status>) {
    let ttl = policy.cache.ttl_seconds;
    let Some(model) = model::identity().filter(|_| ttl > 0) else {
        return (judge(), None);
    };
    let started = Instant::now();
    let key = CacheKey::for_content(content, policy.fingerprint(), model);
    if let Some(found) = lookup(&key) {
        let found = with_lists(found, &known::lists(policy));
        let status = Status::Hit {
            lookup: started.elapsed(),
        };
        return (found, Some(status));
    }
    let moderation = judge();
    if record::cacheable(&moderation) {
        store(&key, &moderation, Duration::from_secs(ttl));
    }
    (moderation, Some(Status::Miss))
}

fn lookup(key: &CacheKey) -> Option<Moderation> {
    let found = match core::lookup(key.as_str().to_owned().into()).execute() {
        Ok(found) => found?,
        Err(e) => {
            eprintln!("moderation: verdict cache lookup failed: {e}");
            return None;
        }
    };
    let mut body = Vec::new();
    let read = found
        .to_stream()
        .map_err(|e| e.to_string())
        .and_then(|mut stream| stream.read_to_end(&mut body).map_err(|e| e.to_string()));
    let decoded =
        read.and_then(|_| record::decode(&found.user_metadata(), body).map_err(|e| e.to_string()));
    decoded
        .inspect_err(|e| eprintln!("moderation: verdict cache record unusable: {e}"))
        .ok()
}

fn store(key: &CacheKey, moderation: &Moderation, ttl: Duration) {
    let record = record::encode(moderation);
    let written = core::insert(key.as_str().to_owned().into(), ttl)
        .user_metadata(record.metadata.into())
        .known_length(record.body.len() as u64)
        .execute()
        .map_err(|e| e.to_string())
        .and_then(|mut body| {
            body.write_all(record.body)
                .and_then(|()| body.finish())
                .map_err(|e| e.to_string())
        });
    if let Err(e) = written {
        eprintln!("moderation: verdict cache insert failed: {e}");
    }
}
