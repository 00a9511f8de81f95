//! Conditional requests (RFC 9110 section 13): strong entity tags for preferences and namespaces,
//! and the preconditions a write is checked against inside its transaction, so that clients can
//! do safe read-modify-write.

use std::fmt::{self, Write as _};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::model::Preference;

/// A strong entity tag: changes whenever the tagged representation does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ETag(String);

impl ETag {
    /// The tag of one preference: its id and version, so it changes on every write and differs
    /// between a deleted preference and a new one under the same key.
    pub fn of_preference(preference: &Preference) -> Self {
        Self(format!("{}.{}", preference.id, preference.version))
    }

    /// The tag of a whole namespace (ordered by id, as the store returns it): a digest of every
    /// preference's id and version.
    pub fn of_namespace(preferences: &[Preference]) -> Self {
        /// Feeds the text written to it to the digest.
        struct Feed(Sha256);
        impl fmt::Write for Feed {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0.update(s.as_bytes());
                Ok(())
            }
        }
        let mut feed = Feed(Sha256::new());
        for p in preferences {
            // Writing to a digest does not fail.
            let _ = write!(feed, "{}.{};", p.id, p.version);
        }
        Self::from_digest(feed.0)
    }

    /// The tag of an arbitrary representation, from its bytes.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self::from_digest(Sha256::new_with_prefix(bytes))
    }

    fn from_digest(digest: Sha256) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let hash = digest.finalize();
        let digits = hash[..12].iter().flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        Self(digits.map(char::from).collect())
    }
}

impl fmt::Display for ETag {
    /// The header form: `"opaque"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0)
    }
}

/// One entry of an `If-Match` or `If-None-Match` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagMatch {
    /// `W/"..."`: never matches in a strong comparison.
    pub weak: bool,
    /// The opaque tag, without quotes.
    pub opaque: String,
}

/// The value of an `If-Match` or `If-None-Match` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `*`: any current representation.
    Any,
    /// A list of tags (possibly empty, when the header could not be parsed: then nothing matches).
    Tags(Vec<TagMatch>),
}

impl Condition {
    /// Parses a header value: `*`, or a comma-separated list of `"tag"` / `W/"tag"`.
    pub fn parse(header: &str) -> Self {
        if header.trim() == "*" {
            return Self::Any;
        }
        let tags = header
            .split(',')
            .filter_map(|item| {
                let item = item.trim();
                let (weak, quoted) = match item.strip_prefix("W/") {
                    Some(rest) => (true, rest),
                    None => (false, item),
                };
                let opaque = quoted.strip_prefix('"')?.strip_suffix('"')?;
                Some(TagMatch { weak, opaque: opaque.to_owned() })
            })
            .collect();
        Self::Tags(tags)
    }

    /// Strong comparison, for `If-Match`: a weak tag never matches; `*` matches any existing
    /// representation.
    fn matches_strongly(&self, current: Option<&ETag>) -> bool {
        match (self, current) {
            (_, None) => false,
            (Self::Any, Some(_)) => true,
            (Self::Tags(tags), Some(current)) => tags.iter().any(|t| !t.weak && t.opaque == current.0),
        }
    }

    /// Weak comparison, for `If-None-Match`.
    fn matches_weakly(&self, current: Option<&ETag>) -> bool {
        match (self, current) {
            (_, None) => false,
            (Self::Any, Some(_)) => true,
            (Self::Tags(tags), Some(current)) => tags.iter().any(|t| t.opaque == current.0),
        }
    }
}

/// The preconditions of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    /// `If-Match`.
    pub if_match: Option<Condition>,
    /// `If-None-Match`.
    pub if_none_match: Option<Condition>,
}

/// What a read should answer, given its preconditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// 200 with the representation.
    Full,
    /// 304: the client's copy is current.
    NotModified,
}

impl Preconditions {
    /// No preconditions.
    pub const NONE: Self = Self { if_match: None, if_none_match: None };

    /// Checks a write against the current tag of its target (`None` when the target does not
    /// exist). `If-Match` is evaluated first.
    ///
    /// # Errors
    /// [`Error::PreconditionFailed`] when `If-Match` does not match strongly, or `If-None-Match`
    /// matches.
    pub fn check_write(&self, current: Option<&ETag>) -> Result<()> {
        if self.if_match.as_ref().is_some_and(|c| !c.matches_strongly(current))
            || self.if_none_match.as_ref().is_some_and(|c| c.matches_weakly(current))
        {
            return Err(Error::PreconditionFailed);
        }
        Ok(())
    }

    /// Evaluates a read of a representation tagged `current`.
    ///
    /// # Errors
    /// [`Error::PreconditionFailed`] when `If-Match` does not match.
    pub fn check_read(&self, current: &ETag) -> Result<ReadOutcome> {
        if self.if_match.as_ref().is_some_and(|c| !c.matches_strongly(Some(current))) {
            return Err(Error::PreconditionFailed);
        }
        Ok(match &self.if_none_match {
            Some(c) if c.matches_weakly(Some(current)) => ReadOutcome::NotModified,
            _ => ReadOutcome::Full,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(s: &str) -> ETag {
        ETag(s.to_owned())
    }

    fn conditions(if_match: Option<&str>, if_none_match: Option<&str>) -> Preconditions {
        Preconditions {
            if_match: if_match.map(Condition::parse),
            if_none_match: if_none_match.map(Condition::parse),
        }
    }

    #[test]
    fn namespace_tags_digest_ids_and_versions() {
        use chrono::Utc;
        use serde_json::json;

        use crate::model::{Namespace, PreferenceId, PreferenceKey, PreferenceValue, UserId};

        let preference = |id, version| Preference {
            id: PreferenceId(id),
            user_id: UserId(1),
            namespace: Namespace::Global,
            key: PreferenceKey::parse(&format!("k{id}")).unwrap(),
            value: PreferenceValue::from_stored(json!(version)),
            created_at: Utc::now(),
            updated_at: Utc::now(),
            version,
        };
        // The first 12 bytes of SHA-256("1.2;5.1;") and of SHA-256(""), in hex: tags stay the same
        // across releases, so clients' stored tags keep matching.
        assert_eq!(
            ETag::of_namespace(&[preference(1, 2), preference(5, 1)]),
            tag("0c6f5c695131e59301aeb668")
        );
        assert_eq!(ETag::of_namespace(&[]), tag("e3b0c44298fc1c149afbf4c8"));
        assert_ne!(
            ETag::of_namespace(&[preference(1, 3), preference(5, 1)]),
            tag("0c6f5c695131e59301aeb668")
        );
    }

    #[test]
    fn parses_lists_stars_and_weak_tags() {
        assert_eq!(Condition::parse(" * "), Condition::Any);
        assert_eq!(
            Condition::parse(r#""a", W/"b" ,garbage"#),
            Condition::Tags(vec![
                TagMatch { weak: false, opaque: "a".into() },
                TagMatch { weak: true, opaque: "b".into() }
            ])
        );
        assert_eq!(Condition::parse("nonsense"), Condition::Tags(vec![]));
    }

    #[test]
    fn writes_follow_rfc_9110() {
        let current = tag("1.2");
        // (If-Match, If-None-Match, target exists, allowed)
        let table: &[(Option<&str>, Option<&str>, bool, bool)] = &[
            (None, None, true, true),
            (Some(r#""1.2""#), None, true, true),
            (Some(r#""1.1""#), None, true, false),
            (Some(r#"W/"1.2""#), None, true, false),
            (Some(r#""0.0", "1.2""#), None, true, true),
            (Some("*"), None, true, true),
            (Some("*"), None, false, false),
            (Some(r#""1.2""#), None, false, false),
            (None, Some("*"), true, false),
            (None, Some("*"), false, true),
            (None, Some(r#"W/"1.2""#), true, false),
            (None, Some(r#""9.9""#), true, true),
            (Some(r#""1.1""#), Some(r#""9.9""#), true, false),
        ];
        for &(if_match, if_none_match, exists, allowed) in table {
            let got = conditions(if_match, if_none_match).check_write(exists.then_some(&current));
            assert_eq!(got.is_ok(), allowed, "{if_match:?} {if_none_match:?} exists={exists}");
        }
    }

    #[test]
    fn reads_answer_304_or_412() {
        let current = tag("x");
        assert_eq!(conditions(None, Some(r#""x""#)).check_read(&current).unwrap(), ReadOutcome::NotModified);
        assert_eq!(
            conditions(None, Some(r#"W/"x""#)).check_read(&current).unwrap(),
            ReadOutcome::NotModified
        );
        assert_eq!(conditions(None, Some(r#""y""#)).check_read(&current).unwrap(), ReadOutcome::Full);
        assert!(conditions(Some(r#""y""#), Some(r#""x""#)).check_read(&current).is_err());
        assert_eq!(Preconditions::NONE.check_read(&current).unwrap(), ReadOutcome::Full);
    }

    #[test]
    fn tags_are_quoted_and_change_with_content() {
        assert_eq!(tag("a").to_string(), "\"a\"");
        assert_ne!(ETag::of_bytes(b"a"), ETag::of_bytes(b"b"));
        assert_eq!(ETag::of_namespace(&[]), ETag::of_namespace(&[]));
    }
}
