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
pub use error::{Error, FieldError, Result};
pub use limits::Limits;
pub use model::{
    Change, ClientId, InvalidName, Namespace, Preference, PreferenceId, PreferenceKey, PreferenceValue, User,
    UserId, Username, depth,
};
pub use ports::{Edit, PreferenceStore, Store, UserStore};
pub use service::{Actor, PreferenceService, UserRef};
