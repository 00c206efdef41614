
pub mod classify;
