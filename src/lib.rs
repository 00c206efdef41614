pub mod providers;
pub mod sse;
pub mod usage;
