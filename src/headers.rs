//! The HTTP names the service speaks (headers it writes, its internal route), shared by the
//! Compute glue and the tests (which cannot import from the binary, where the glue lives).

/// `pass`, `block` or `rewrite`.
pub const VERDICT: &str = "x-moderation-verdict";
/// Why: `rule 0: Porn+Hentai>=0.60 -> block`, `no rule matched`, `undecodable: …`.
pub const REASON: &str = "x-moderation-reason";
/// `Drawing=0.0602,Hentai=…`, when the model ran.
pub const SCORES: &str = "x-moderation-scores";
/// Where the policy in force came from: `stored`, `default`, `default (stored policy invalid)`.
pub const POLICY: &str = "x-moderation-policy";
/// The name of the route whose policy judged (absent for the default policy).
pub const ROUTE: &str = "x-moderation-route";
/// In report-only mode, what the policy would have done (`block` or `rewrite`); the
/// verdict is then `pass` and nothing was changed.
pub const WOULD: &str = "x-moderation-would";
/// `hit` or `miss`: whether the verdict came from the verdict cache.
pub const CACHE: &str = "x-moderation-cache";
/// The CPU milliseconds of each sibling instance that ran part of the work, in order:
/// with the `cpu` entry of `Server-Timing`, the largest instance of a request.
pub const SIBLING_CPU: &str = "x-moderation-sibling-cpu";
/// Why the origin could not be reached (on our 502 and 504 answers).
pub const ERROR: &str = "x-moderation-error";
/// Stage costs: `decode;dur=6.29, inference;dur=48.89`, or `cache;dur=0.31` on a hit; then
/// `cpu;dur=N`, the instance's CPU milliseconds at reply time.
pub const SERVER_TIMING: &str = "server-timing";

/// Every header the service writes starts so; a client's own are removed from requests
/// before they are forwarded, so the origin can trust them.
pub const PREFIX: &str = "x-moderation-";

/// The internal route sibling instances receive hand-offs on (`edge/siblings.rs`).
pub const SIBLING_ROUTE: &str = "/.edge-moderation/segments";
/// Carries the shared secret on a hand-off; without it the route is ordinary traffic.
pub const SIBLING_KEY: &str = "x-edge-moderation-sibling-key";
/// The internal route on which a sibling instance judges a whole image (one image of an
/// upload with several).
pub const SIBLING_IMAGE_ROUTE: &str = "/.edge-moderation/image";
