//! Shared data generators for the benchmarks.
pub mod datagen;
