#![doc = include_str!("../README.md")]
//!
//! The feature `memory` adds `MemoryStore`, a complete store in memory, and `testing` the
//! contract suite every store must pass (`prefs_domain::testing`).
#![cfg_attr(
    feature = "memory",
    doc = concat!(
        "\n## Embedding\n\nA service of its own, its users' preferences in a [`MemoryStore`] ",
        "(`examples/embed.rs`):\n\n```\n",
        include_str!("../examples/embed.rs"),
        "```"
    )
)]

pub mod access;
pub mod conditions;
pub mod edx;
mod error;
mod limits;
#[cfg(feature = "memory")]
mod memory;
pub mod merge_patch;
mod model;
mod ports;
mod service;
#[cfg(feature = "testing")]
pub mod testing;

pub use access::{Action, Decision, Principal};
pub use conditions::{Condition, ETag, Preconditions, ReadOutcome};
pub use edx::parse_exact;
pub use error::{Error, FieldCode, FieldError, Result};
pub use limits::Limits;
#[cfg(feature = "memory")]
pub use memory::MemoryStore;
pub use model::{
    Change, ClientId, InvalidName, MAX_NAME_BYTES, Namespace, Preference, PreferenceId, PreferenceKey,
    PreferenceValue, User, UserId, Username, depth, out_of_range_number, validate_subject, validate_user_id,
};
pub use ports::{Edit, PreferenceStore, Store, UserStore};
pub use service::{Actor, PreferenceService, UserRef};
