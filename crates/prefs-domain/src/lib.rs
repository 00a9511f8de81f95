#![doc = include_str!("../README.md")]

pub mod access;
pub mod conditions;
pub mod edx;
mod error;
mod limits;
pub mod merge_patch;
mod model;
mod ports;
mod service;

pub use access::{Action, Decision, Principal};
pub use conditions::{Condition, ETag, Preconditions, ReadOutcome};
pub use edx::parse_exact;
pub use error::{Error, FieldError, Result};
pub use limits::Limits;
pub use model::{
    Change, ClientId, InvalidName, MAX_NAME_BYTES, Namespace, Preference, PreferenceId, PreferenceKey,
    PreferenceValue, User, UserId, Username, depth, out_of_range_number, validate_subject,
};
pub use ports::{Edit, PreferenceStore, Store, UserStore};
pub use service::{Actor, PreferenceService, UserRef};
