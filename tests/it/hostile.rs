//! Hostile end-to-end tests: what a malicious device, a device without a clock, a gateway
//! speaking for many devices, a client that never finishes its request and a read-only token
//! can do to the real binary (issue "Trust"). Each file holds one area; each test fails on a
//! server without the protection it names. `docs/security.md` maps the threat model to them.

mod http_exhaustion;
mod mqtt_fidelity;
mod mqtt_isolation;
mod query_memory;
mod recovery;
mod secrets;
