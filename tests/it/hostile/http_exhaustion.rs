//! See `../hostile.rs`.
