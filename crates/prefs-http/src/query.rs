//! Query strings: each parameter prefs reads is taken once. A repeated one
//! (`?user_id=1&user_id=2`) is ambiguous, and refused (400 in the dialect's format) rather than
//! read as its first or last value.

use std::collections::HashMap;

use prefs_domain::{Error, FieldCode, FieldError};

use crate::error::Problem;

/// The values of the parameters `names` in `query` (percent-decoded); the others are ignored.
///
/// # Errors
/// A 400 naming the first parameter of `names` that is given more than once.
pub(crate) fn single(query: &str, names: &[&'static str]) -> Result<HashMap<&'static str, String>, Problem> {
    let mut values = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let Some(&name) = names.iter().find(|n| **n == name) else { continue };
        if values.insert(name, value.into_owned()).is_some() {
            let message = format!("The query parameter `{name}` is given more than once.");
            return Err(Error::Invalid(vec![FieldError::new(name, FieldCode::Ambiguous, message)]).into());
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_parameter_read_is_taken_once() {
        let values = single("limit=5&other=1&other=2&key=a%20b", &["limit", "key"]).unwrap();
        assert_eq!(values.get("limit").map(String::as_str), Some("5"));
        assert_eq!(values.get("key").map(String::as_str), Some("a b"));
        assert!(single("user_id=1&user_id=2", &["user_id"]).is_err());
        assert!(single("user_id=1&user%5Fid=1", &["user_id"]).is_err(), "decoded names count");
    }
}
