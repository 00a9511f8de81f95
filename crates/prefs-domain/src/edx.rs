//! The rules of the Open edX user preferences API (docs/contract.md §3.1): keys, and values, which
//! are strings. Open edX stores any other JSON value as the text Python's `str()` gives for what
//! `json.loads` made of it (`true` -> `"True"`, `{"a": null}` -> `"{'a': None}"`); [`Python`]
//! reproduces that, from the JSON text so that numbers keep their exact value.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::str::FromStr;

use serde_json::{Map, Value};
use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

use crate::error::{Error, FieldCode, FieldError, Result};
use crate::model::PreferenceKey;

/// The message Open edX gives for an empty or non-object PATCH body.
pub const NO_DATA: &str = "No data provided for user preference update";

/// The message Open edX (Django REST framework) gives for a value holding U+0000.
pub const NULL_CHARACTERS: &str = "Null characters are not allowed.";

/// The only key whose values are checked beyond being strings: IANA time zone names.
pub const TIME_ZONE_KEY: &str = "time_zone";

/// The most characters an Open edX key has (its model's `max_length`).
pub const MAX_KEY_CHARS: usize = 255;

/// The most digits Python converts between an `int` and its text (`sys.get_int_max_str_digits()`).
const MAX_INT_DIGITS: usize = 4300;

/// How deeply a JSON text may nest before [`Python::from_json`] gives up.
const MAX_NESTING: usize = 512;

/// A JSON value as Python's `json.loads` makes it: integers stay exact (kept as their text),
/// other numbers are `float`s, and an object is a `dict` in the order of its members (a repeated
/// name keeps its first place and takes its last value).
#[derive(Debug, Clone, PartialEq)]
pub enum Python {
    /// `null`.
    None,
    /// `true` or `false`.
    Bool(bool),
    /// An integer, as its canonical decimal text (`-0` is `0`).
    Int(String),
    /// A number with a fraction or an exponent.
    Float(f64),
    /// A string.
    Str(String),
    /// An array.
    List(Vec<Python>),
    /// An object.
    Dict(Vec<(String, Python)>),
}

/// Why a text is not a JSON value [`Python`] can hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotJson(&'static str);

impl Python {
    /// What `json.loads(text)` gives.
    ///
    /// # Errors
    /// [`NotJson`] when `text` is not one JSON value, holds a number out of `float`'s range
    /// (Python would make it `inf`; prefs refuses it, as every dialect does) or an integer of more
    /// digits than Python converts, a lone surrogate escape, or nests too deeply.
    pub fn from_json(text: &str) -> Result<Self, NotJson> {
        Parser::read(text)
    }

    /// What Python's `str()` gives: a string is itself, anything else its `repr()`.
    pub fn str(&self) -> String {
        match self {
            Self::Str(s) => s.clone(),
            other => other.repr(),
        }
    }

    /// What Python's `repr()` gives.
    pub fn repr(&self) -> String {
        let mut out = String::new();
        self.write_repr(&mut out);
        out
    }

    fn write_repr(&self, out: &mut String) {
        match self {
            Self::None => out.push_str("None"),
            Self::Bool(true) => out.push_str("True"),
            Self::Bool(false) => out.push_str("False"),
            Self::Int(digits) => out.push_str(digits),
            Self::Float(f) => write_float(*f, out),
            Self::Str(s) => write_str(s, out),
            Self::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write_repr(out);
                }
                out.push(']');
            }
            Self::Dict(members) => {
                out.push('{');
                for (i, (name, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_str(name, out);
                    out.push_str(": ");
                    value.write_repr(out);
                }
                out.push('}');
            }
        }
    }
}

/// Parses JSON text into a [`Value`] whose numbers keep their text exactly as written
/// (`1E16` stays `1E16`, `18446744073709551616` and `1.50` as they are), which serde_json's own
/// parser does not do (it writes exponents as `e+16`). A repeated member name keeps its last
/// value, as serde_json does.
///
/// # Errors
/// [`NotJson`] when `text` is not one JSON value, holds a lone surrogate escape or nests too
/// deeply. Numbers out of `f64`'s range are not refused here ([`crate::out_of_range_number`]).
pub fn parse_exact(text: &str) -> Result<Value, NotJson> {
    Parser::read(text)
}

/// A tree [`Parser`] builds, one JSON token at a time: one reader serves both [`Python`] values
/// and exact [`Value`]s.
trait Tree: Sized {
    fn null() -> Self;
    fn bool(value: bool) -> Self;
    /// A number from its text; `float` when it has a fraction or an exponent.
    fn number(token: &str, float: bool) -> Result<Self, NotJson>;
    fn string(value: String) -> Self;
    fn array(items: Vec<Self>) -> Self;
    /// An object from its members in order, a name possibly repeated.
    fn object(members: Vec<(String, Self)>) -> Self;
}

impl Tree for Python {
    fn null() -> Self {
        Self::None
    }

    fn bool(value: bool) -> Self {
        Self::Bool(value)
    }

    fn number(token: &str, float: bool) -> Result<Self, NotJson> {
        let integer = token.trim_start_matches('-');
        if float {
            match token.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Self::Float(f)),
                _ => Err(NotJson("a number out of range")),
            }
        } else if integer.len() > MAX_INT_DIGITS {
            Err(NotJson("an integer of more digits than Python converts"))
        } else if integer.bytes().all(|b| b == b'0') {
            Ok(Self::Int("0".to_owned()))
        } else {
            Ok(Self::Int(token.to_owned()))
        }
    }

    fn string(value: String) -> Self {
        Self::Str(value)
    }

    fn array(items: Vec<Self>) -> Self {
        Self::List(items)
    }

    /// As a `dict`: a repeated name keeps its first place and takes its last value.
    fn object(members: Vec<(String, Self)>) -> Self {
        let mut dict: Vec<(String, Self)> = Vec::with_capacity(members.len());
        let mut places: HashMap<String, usize> = HashMap::new();
        for (name, value) in members {
            match places.get(&name) {
                Some(&place) => dict[place].1 = value,
                None => {
                    places.insert(name.clone(), dict.len());
                    dict.push((name, value));
                }
            }
        }
        Self::Dict(dict)
    }
}

impl Tree for Value {
    fn null() -> Self {
        Self::Null
    }

    fn bool(value: bool) -> Self {
        Self::Bool(value)
    }

    fn number(token: &str, _float: bool) -> Result<Self, NotJson> {
        Ok(Self::Number(serde_json::Number::from_string_unchecked(token.to_owned())))
    }

    fn string(value: String) -> Self {
        Self::String(value)
    }

    fn array(items: Vec<Self>) -> Self {
        Self::Array(items)
    }

    /// A repeated name takes its last value, as serde_json does.
    fn object(members: Vec<(String, Self)>) -> Self {
        Self::Object(members.into_iter().collect::<Map<_, _>>())
    }
}

/// `repr(f)` for a finite float: the shortest digits that read back as `f`, in positional
/// notation when the decimal point falls within -4 < position <= 16, else in exponent notation
/// with at least two exponent digits (`1e+16`, `1e-05`); positional notation always has a
/// fraction (`10.0`).
fn write_float(f: f64, out: &mut String) {
    if f == 0.0 {
        out.push_str(if f.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    // Rust's `{:e}` writes the shortest round-trip digits: `-1.2345e-5`.
    let scientific = format!("{f:e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("`{:e}` writes an exponent");
    let exponent: i64 = exponent.parse().expect("`{:e}` writes an integer exponent");
    let mantissa = match mantissa.strip_prefix('-') {
        Some(rest) => {
            out.push('-');
            rest
        }
        None => mantissa,
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // The value is 0.DIGITS x 10^point.
    let point = exponent + 1;
    let zeros =
        |n: i64, out: &mut String| out.extend(std::iter::repeat_n('0', usize::try_from(n).unwrap_or(0)));
    if point <= -4 || point > 16 {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exponent.abs());
    } else if point <= 0 {
        out.push_str("0.");
        zeros(-point, out);
        out.push_str(&digits);
    } else {
        let point = usize::try_from(point).expect("positive");
        if point < digits.len() {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        } else {
            out.push_str(&digits);
            zeros(i64::try_from(point - digits.len()).unwrap_or(0), out);
            out.push_str(".0");
        }
    }
}

/// `repr(s)` as CPython's `unicode_repr` writes it: single quotes, or double quotes when the
/// string holds a single quote and no double quote; `\\`, `\t`, `\n`, `\r` and the quote escaped;
/// other ASCII control characters as `\xNN`; non-ASCII characters that are not printable (Unicode
/// categories Other and Separator) as `\xNN`, `\uNNNN` or `\UNNNNNNNN`; the rest as they are.
fn write_str(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c < ' ' || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if c.is_ascii() || is_printable(c) => out.push(c),
            c => {
                let code = u32::from(c);
                let _ = match code {
                    ..=0xff => write!(out, "\\x{code:02x}"),
                    0x100..=0xffff => write!(out, "\\u{code:04x}"),
                    _ => write!(out, "\\U{code:08x}"),
                };
            }
        }
    }
    out.push(quote);
}

/// Python's `str.isprintable()` for one non-ASCII character: not of the Unicode categories Other
/// (Cc, Cf, Cs, Co, Cn) or Separator (Zs, Zl, Zp).
fn is_printable(c: char) -> bool {
    !matches!(c.general_category_group(), GeneralCategoryGroup::Other | GeneralCategoryGroup::Separator)
}

/// A recursive-descent reader of JSON text into a [`Tree`].
struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        self.at += usize::from(found);
        found
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), NotJson> {
        if self.eat(byte) { Ok(()) } else { Err(NotJson(what)) }
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        self.at - start
    }

    fn literal<T>(&mut self, word: &str, value: T) -> Result<T, NotJson> {
        if self.text[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(NotJson("an invalid literal"))
        }
    }

    /// The one value `text` holds, whitespace around it allowed.
    fn read<T: Tree>(text: &str) -> Result<T, NotJson> {
        let mut parser = Parser { text, at: 0 };
        parser.whitespace();
        let value = parser.value(0)?;
        parser.whitespace();
        if parser.at == text.len() { Ok(value) } else { Err(NotJson("trailing characters after the value")) }
    }

    fn value<T: Tree>(&mut self, depth: usize) -> Result<T, NotJson> {
        if depth > MAX_NESTING {
            return Err(NotJson("too deeply nested"));
        }
        match self.peek() {
            Some(b'n') => self.literal("null", T::null()),
            Some(b't') => self.literal("true", T::bool(true)),
            Some(b'f') => self.literal("false", T::bool(false)),
            Some(b'"') => self.string().map(T::string),
            Some(b'-' | b'0'..=b'9') => {
                let (token, float) = self.number_token()?;
                T::number(token, float)
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.whitespace();
                if !self.eat(b']') {
                    loop {
                        self.whitespace();
                        items.push(self.value(depth + 1)?);
                        self.whitespace();
                        if self.eat(b']') {
                            break;
                        }
                        self.expect(b',', "expected `,` or `]`")?;
                    }
                }
                Ok(T::array(items))
            }
            Some(b'{') => {
                self.at += 1;
                let mut members = Vec::new();
                self.whitespace();
                if !self.eat(b'}') {
                    loop {
                        self.whitespace();
                        if self.peek() != Some(b'"') {
                            return Err(NotJson("expected a member name"));
                        }
                        let name = self.string()?;
                        self.whitespace();
                        self.expect(b':', "expected `:`")?;
                        self.whitespace();
                        members.push((name, self.value(depth + 1)?));
                        self.whitespace();
                        if self.eat(b'}') {
                            break;
                        }
                        self.expect(b',', "expected `,` or `}`")?;
                    }
                }
                Ok(T::object(members))
            }
            _ => Err(NotJson("expected a value")),
        }
    }

    /// Reads one number: its text, and whether it has a fraction or an exponent.
    fn number_token(&mut self) -> Result<(&str, bool), NotJson> {
        let start = self.at;
        self.eat(b'-');
        let integer_start = self.at;
        let integer_digits = self.digits();
        let integer = &self.text[integer_start..self.at];
        if integer_digits == 0 || (integer_digits > 1 && integer.starts_with('0')) {
            return Err(NotJson("an invalid number"));
        }
        let mut float = false;
        if self.eat(b'.') {
            float = true;
            if self.digits() == 0 {
                return Err(NotJson("an invalid number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            float = true;
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(NotJson("an invalid number"));
            }
        }
        Ok((&self.text[start..self.at], float))
    }

    fn hex4(&mut self) -> Result<u32, NotJson> {
        let hex = self.text.get(self.at..self.at + 4).ok_or(NotJson("a bad `\\u` escape"))?;
        let code = u32::from_str_radix(hex, 16).map_err(|_| NotJson("a bad `\\u` escape"))?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(NotJson("a bad `\\u` escape"));
        }
        self.at += 4;
        Ok(code)
    }

    fn string(&mut self) -> Result<String, NotJson> {
        self.at += 1;
        let mut out = String::new();
        loop {
            let start = self.at;
            while self.peek().is_some_and(|b| b != b'"' && b != b'\\' && b >= 0x20) {
                self.at += 1;
            }
            out.push_str(&self.text[start..self.at]);
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    let escape = self.peek().ok_or(NotJson("an unterminated string"))?;
                    self.at += 1;
                    let c = match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let high = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&high) {
                                if !self.text[self.at..].starts_with("\\u") {
                                    return Err(NotJson("a lone surrogate"));
                                }
                                self.at += 2;
                                let low = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return Err(NotJson("a lone surrogate"));
                                }
                                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                            } else {
                                high
                            };
                            char::from_u32(code).ok_or(NotJson("a lone surrogate"))?
                        }
                        _ => return Err(NotJson("a bad escape")),
                    };
                    out.push(c);
                }
                _ => return Err(NotJson("an unterminated string or a control character in it")),
            }
        }
    }
}

/// Validates a key as Open edX does: trimmed, it has at most [`MAX_KEY_CHARS`] characters and at
/// least one from `[-_a-zA-Z0-9]` (Open edX tests its pattern with `re.search`), besides prefs'
/// own rule for keys (no control characters). The key returned is the trimmed one.
///
/// # Errors
/// A [`FieldError`] naming `key` as sent, with Open edX's message; code `too-large` for a key
/// over the length, else `invalid-key`.
pub fn parse_key(key: &str) -> Result<PreferenceKey, FieldError> {
    let trimmed = key.trim();
    let length = trimmed.chars().count();
    let has_word = trimmed.bytes().any(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match PreferenceKey::parse(trimmed) {
        Ok(parsed) if has_word && length <= MAX_KEY_CHARS => Ok(parsed),
        _ => {
            let code = if length > MAX_KEY_CHARS { FieldCode::TooLarge } else { FieldCode::InvalidKey };
            Err(FieldError::new(key, code, format!("Invalid user preference key '{key}'."))
                .with_developer_message(format!(
                    "Key '{key}': a key has 1 to {MAX_KEY_CHARS} characters, one of them from \
                     [-_a-zA-Z0-9], and no control characters."
                )))
        }
    }
}

/// Validates and normalises one value as Open edX does: it becomes the text Python's `str()`
/// gives for it ([`Python::str`]), trimmed; `null` counts as empty. An empty text, or one holding
/// U+0000, is invalid, and `time_zone` accepts IANA time zone names only.
///
/// # Errors
/// A [`FieldError`] naming `key`, with Open edX's messages: code `empty`, else `invalid-value`.
pub fn normalize_value(key: &str, value: &Python) -> Result<String, FieldError> {
    let text = match value {
        Python::None => String::new(),
        Python::Str(s) => s.trim().to_owned(),
        other => other.repr(),
    };
    if text.is_empty() {
        return Err(FieldError::new(
            key,
            FieldCode::Empty,
            format!("Preference '{key}' cannot be set to an empty value."),
        ));
    }
    if text.contains('\0') {
        return Err(FieldError::new(key, FieldCode::InvalidValue, NULL_CHARACTERS));
    }
    if key == TIME_ZONE_KEY && chrono_tz::Tz::from_str(&text).is_err() {
        return Err(FieldError::new(
            key,
            FieldCode::InvalidValue,
            format!("Value '{text}' is not a valid time zone selection."),
        )
        .with_developer_message(format!(
            "Value '{text}' not valid for preference '{key}': Not in timezone set."
        )));
    }
    Ok(text)
}

/// Validates one member written through Open edX (a PATCH member, or a PUT of one key): the
/// checks run in Open edX's order (an empty value first, then the key, then the value), and the
/// answer is the trimmed key with the value's text.
///
/// # Errors
/// The first [`FieldError`] found, naming `key` as sent.
pub fn normalize_member(key: &str, value: &Python) -> Result<(PreferenceKey, String), FieldError> {
    match normalize_value(key, value) {
        Err(empty) if empty.code == FieldCode::Empty => Err(empty),
        checked => {
            let key = parse_key(key)?;
            checked.map(|text| (key, text))
        }
    }
}

/// Validates an Open edX PATCH body, given as its JSON text, and normalises it into the merge
/// patch to apply: each member's key trimmed and its value the text Open edX stores
/// ([`normalize_member`]). A `null` member deletes its key and is not validated, as in Open edX;
/// one whose key no preference can have is left out. Every member is checked, and all problems
/// are reported together.
///
/// # Errors
/// [`Error::Invalid`] with one entry per bad member, or with a single `NO_DATA` entry (field
/// empty) when the body is not an object or is an empty one.
pub fn normalize_patch(body: &str) -> Result<Map<String, Value>> {
    let members = match Python::from_json(body) {
        Ok(Python::Dict(members)) if !members.is_empty() => members,
        Err(error) if !body.trim().is_empty() => {
            return Err(Error::invalid(FieldError::new("", FieldCode::InvalidJson, error.to_string())));
        }
        _ => return Err(Error::invalid(FieldError::new("", FieldCode::NoData, NO_DATA))),
    };
    let mut normalized = Map::with_capacity(members.len());
    let mut errors = Vec::new();
    for (key, value) in &members {
        if *value == Python::None {
            if PreferenceKey::parse(key).is_ok() {
                normalized.insert(key.clone(), Value::Null);
            }
            continue;
        }
        match normalize_member(key, value) {
            Ok((key, text)) => {
                normalized.insert(key.as_str().to_owned(), Value::String(text));
            }
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() { Ok(normalized) } else { Err(Error::Invalid(errors)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn str_of(json: &str) -> String {
        Python::from_json(json).unwrap_or_else(|e| panic!("{json}: {e}")).str()
    }

    fn value(json: &str) -> Python {
        Python::from_json(json).unwrap()
    }

    #[test]
    fn values_are_stored_as_python_str_gives_them() {
        let table = [
            // The examples of Open edX's own behaviour.
            ("true", "True"),
            ("false", "False"),
            ("null", "None"),
            ("10", "10"),
            ("0", "0"),
            ("-0", "0"),
            ("-7", "-7"),
            ("18446744073709551616", "18446744073709551616"),
            ("-123456789012345678901234567890", "-123456789012345678901234567890"),
            ("1.5", "1.5"),
            ("1.0", "1.0"),
            ("1.50", "1.5"),
            ("-0.0", "-0.0"),
            ("0.0", "0.0"),
            ("1e16", "1e+16"),
            ("1E+16", "1e+16"),
            ("1e15", "1000000000000000.0"),
            ("123456789012345.0", "123456789012345.0"),
            ("12345678901234567890.0", "1.2345678901234567e+19"),
            ("1e2", "100.0"),
            ("1e-05", "1e-05"),
            ("0.00001", "1e-05"),
            ("0.0001", "0.0001"),
            ("2.5e-7", "2.5e-07"),
            ("0.1", "0.1"),
            ("1.5e300", "1.5e+300"),
            ("-1.5e-300", "-1.5e-300"),
            ("5e-324", "5e-324"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("[1, \"a\"]", "[1, 'a']"),
            ("[]", "[]"),
            ("{}", "{}"),
            ("{\"int_key\": 10}", "{'int_key': 10}"),
            ("{\"a\": null}", "{'a': None}"),
            (
                "{\"a\": [true, null, 1.5, {\"x\": \"y\"}], \"b\": {}}",
                "{'a': [True, None, 1.5, {'x': 'y'}], 'b': {}}",
            ),
            // Members keep their order; a repeated name keeps its first place and its last value.
            ("{\"b\": 1, \"a\": 2, \"b\": 3}", "{'b': 3, 'a': 2}"),
            // A string is itself; inside a container it is its repr.
            ("\"it's\"", "it's"),
            ("[\"it's\"]", "[\"it's\"]"),
            ("[\"he said \\\"hi\\\"\"]", "['he said \"hi\"']"),
            ("[\"it's \\\"both\\\"\"]", "['it\\'s \"both\"']"),
            ("[\"a\\\\b\"]", "['a\\\\b']"),
            ("[\"\\n\\t\\r\"]", "['\\n\\t\\r']"),
            ("[\"\\u0000\\u0001\\u001f\\u007f\\b\\f\"]", "['\\x00\\x01\\x1f\\x7f\\x08\\x0c']"),
            ("[\"\\u0080\\u009f\\u00a0\\u00ad\"]", "['\\x80\\x9f\\xa0\\xad']"),
            ("[\"\\u200b\\u2028\\u3000\\ufeff\\ue000\"]", "['\\u200b\\u2028\\u3000\\ufeff\\ue000']"),
            ("[\"\\udb40\\udc01\"]", "['\\U000e0001']"),
            ("[\"é日本 ü\"]", "['é日本 ü']"),
            ("[\"\\ud83d\\ude00 😀\"]", "['😀 😀']"),
            ("{\"k'\": \"/\\/\"}", "{\"k'\": '//'}"),
        ];
        for (json, expected) in table {
            assert_eq!(str_of(json), expected, "{json}");
        }
    }

    #[test]
    fn exact_parsing_keeps_number_texts() {
        let text =
            r#"{"b": [1E16, -0, 1.50, 18446744073709551616, 2.5e+3], "a": {"x": "\u00e9\n"}, "b2": 1e400}"#;
        let value = parse_exact(text).unwrap();
        assert_eq!(
            serde_json::to_string(&value).unwrap(),
            r#"{"a":{"x":"é\n"},"b":[1E16,-0,1.50,18446744073709551616,2.5e+3],"b2":1e400}"#
        );
        assert_eq!(parse_exact(r#"{"a": 1, "a": 2}"#).unwrap(), serde_json::json!({"a": 2}));
        for bad in ["", "[1,]", "\"\\ud800\"", "01", "[1] 2", "{\"a\"}"] {
            assert!(parse_exact(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn texts_that_are_not_values_python_holds_are_refused() {
        for json in
            ["1e400", "-1e400", "\"\\ud800\"", "[1,]", "{\"a\" 1}", "01", "1.", "-", "tru", "[1] 2", ""]
        {
            assert!(Python::from_json(json).is_err(), "{json}");
        }
        assert!(Python::from_json(&"9".repeat(4301)).is_err());
        assert_eq!(str_of(&"9".repeat(4300)), "9".repeat(4300));
    }

    #[test]
    fn values_are_trimmed_and_not_empty() {
        assert_eq!(normalize_value("k", &value("\"  fr  \"")).unwrap(), "fr");
        assert_eq!(normalize_value("k", &value("5")).unwrap(), "5");
        assert_eq!(normalize_value("k", &value("false")).unwrap(), "False");
        assert_eq!(normalize_value("k", &value("[\" a \"]")).unwrap(), "[' a ']");
        for blank in ["\"\"", "\"   \"", "\"\\t\\n\"", "null"] {
            let err = normalize_value("k", &value(blank)).unwrap_err();
            assert_eq!(
                (err.code, err.user_message.as_str()),
                (FieldCode::Empty, "Preference 'k' cannot be set to an empty value.")
            );
        }
    }

    #[test]
    fn null_characters_are_refused() {
        let err = normalize_value("k", &value("\"a\\u0000b\"")).unwrap_err();
        assert_eq!(
            (err.user_message.as_str(), err.developer_message.as_str()),
            (NULL_CHARACTERS, NULL_CHARACTERS)
        );
        // Inside a container, repr escapes it.
        assert_eq!(normalize_value("k", &value("[\"\\u0000\"]")).unwrap(), "['\\x00']");
    }

    #[test]
    fn time_zone_takes_iana_names_only() {
        assert_eq!(normalize_value("time_zone", &value("\"Europe/Paris\"")).unwrap(), "Europe/Paris");
        let err = normalize_value("time_zone", &value("\"Mars/Olympus\"")).unwrap_err();
        assert_eq!(err.user_message, "Value 'Mars/Olympus' is not a valid time zone selection.");
        assert_eq!(
            err.developer_message,
            "Value 'Mars/Olympus' not valid for preference 'time_zone': Not in timezone set."
        );
        assert!(normalize_value("tz", &value("\"Mars/Olympus\"")).is_ok());
    }

    #[test]
    fn keys_need_one_word_character_and_are_trimmed() {
        for (key, stored) in [
            ("a b", "a b"),
            ("app/theme", "app/theme"),
            ("  pref-lang ", "pref-lang"),
            ("-", "-"),
            ("größe", "größe"),
        ] {
            assert_eq!(parse_key(key).unwrap().as_str(), stored, "{key:?}");
        }
        assert!(parse_key(&format!("a{}", "é".repeat(254))).is_ok(), "255 characters, more bytes");
        for key in ["", "  ", "!!", "é", "a\u{1}b", "/.", &"k".repeat(256)] {
            let err = parse_key(key).unwrap_err();
            assert_eq!(err.user_message, format!("Invalid user preference key '{key}'."), "{key:?}");
        }
        assert_eq!(parse_key(&"k".repeat(255)).unwrap().as_str().len(), 255);
        assert_eq!(parse_key(&format!(" {} ", "k".repeat(255))).unwrap().as_str().len(), 255);
        assert_eq!(parse_key(&"k".repeat(256)).unwrap_err().code, FieldCode::TooLarge);
    }

    #[test]
    fn patch_reports_every_bad_member() {
        let body = r#"{"!!": "x", "ok": "y", "blank": " ", "gone": null, "flag": false, "nul": "\u0000"}"#;
        let Err(Error::Invalid(errors)) = normalize_patch(body) else {
            panic!("expected invalid");
        };
        let mut fields: Vec<_> = errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [("!!", FieldCode::InvalidKey), ("blank", FieldCode::Empty), ("nul", FieldCode::InvalidValue)]
        );
        assert_eq!(errors[0].user_message, "Invalid user preference key '!!'.");
    }

    #[test]
    fn patch_converts_values_and_skips_checks_for_nulls() {
        let body = r#"{"a": " v ", "b": null, "n": 3, "dark_mode": true, " t ": {"x": null}, "a b": null, "!!": null, "": null, "c\u0001": null}"#;
        let patch = normalize_patch(body).unwrap();
        assert_eq!(
            Value::Object(patch),
            serde_json::json!({"a": "v", "b": null, "n": "3", "dark_mode": "True", "t": "{'x': None}",
                "a b": null, "!!": null})
        );
        for body in ["{}", "[]", "\"x\"", "null", "1", "", "  "] {
            let Err(Error::Invalid(errors)) = normalize_patch(body) else { panic!("{body}") };
            assert_eq!(errors[0].user_message, NO_DATA);
        }
        assert!(normalize_patch("{\"a\": 1e400}").is_err());
    }
}
