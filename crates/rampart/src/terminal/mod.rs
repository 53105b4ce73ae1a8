//! The terminal side of `rampart run`: a stderr shared by log lines and the
//! approval prompt ([`console`]), and the prompt itself ([`prompt`]).

pub mod console;
pub mod prompt;
