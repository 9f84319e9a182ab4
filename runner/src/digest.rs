//! Content digests: a pipeline's hash (recorded with each run, and what tells an approved
//! request its pipeline changed), a plugin's cache key, a step's idempotency key.

use sha2::Digest;

/// SHA-256 of `bytes`, as 64 lower-case hex characters.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}
