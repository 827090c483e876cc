//! JSON callbacks: one serde_json pass that flattens a JSON object into the same leaf fields
//! the XML walk produces, so one model ([`Message`](super::Message)) serves both formats.
//!
//! # The shape
//!
//! The body must be one JSON object (the `<xml>` root's twin). Each scalar below it is a
//! field named by its path of keys, joined with `/` as for XML (`ScanCodeInfo/ScanType`).
//! An array is the JSON spelling of a repeated element: each of its items has the array's
//! own path (`{"List":[{"TemplateId":"a"},{"TemplateId":"b"}]}` gives two `List/TemplateId`
//! fields, one per item, exactly as two `<List>` elements would). Values become text:
//! strings as they are (escapes resolved), integers in decimal, other numbers in their
//! shortest exact form (`23.137466`, `1e300`), `true`/`false`, and `null` as empty text; an
//! empty object or array is kept as one empty field, so its presence is not lost.
//!
//! # Bounds
//!
//! As for XML, and checked while reading, before anything is allocated for what lies past
//! them: objects and arrays nest at most [`MAX_DEPTH`] deep below the root, a body holds at
//! most [`MAX_VALUES`] values (scalars, objects and arrays), a key is at most
//! [`MAX_NAME_LEN`] bytes, not empty and without `/`. The body itself is capped by
//! [`VerifyLayer::body_limit`](crate::VerifyLayer::body_limit). A violation is a
//! [`ParseError`] with a fixed text; serde_json's own messages (which quote the input) are
//! never shown.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::ParseError;
use super::fields::Field;

/// Objects and arrays open below the root, at most: WeChat's JSON nests three deep
/// (`List` → item → field).
pub(crate) const MAX_DEPTH: usize = 8;

/// Values (scalars, objects, arrays) below the root, at most, as for XML elements.
pub(crate) const MAX_VALUES: u32 = 2048;

/// Key length in bytes, at most, as for XML element names.
pub(crate) const MAX_NAME_LEN: usize = 64;

/// Walks `json` once into its leaf fields (each wrapped in `Some`, ready to be taken).
pub(crate) fn leaf_fields(json: &[u8]) -> Result<Vec<Option<Field<'_>>>, ParseError> {
    let mut walk = Walk {
        fields: Vec::with_capacity(8),
        values: 0,
        error: None,
    };
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    if let Err(error) = (&mut deserializer).deserialize_any(RootVisitor(&mut walk)) {
        return Err(walk.error.take().unwrap_or_else(|| syntax_error(&error)));
    }
    // Only whitespace may follow the object.
    deserializer
        .end()
        .map_err(|_| ParseError::TrailingContent)?;
    Ok(walk.fields)
}

/// serde_json's error as a fixed text: its own message quotes the input.
fn syntax_error(error: &serde_json::Error) -> ParseError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Eof => ParseError::Syntax("unexpected end of JSON"),
        Category::Syntax => ParseError::Syntax("invalid JSON"),
        Category::Data => ParseError::Syntax("invalid JSON value"),
        Category::Io => ParseError::Syntax("read error"),
    }
}

/// What the walk has found so far; `error` is the reason a visitor stopped it.
struct Walk<'a> {
    fields: Vec<Option<Field<'a>>>,
    values: u32,
    error: Option<ParseError>,
}

impl<'a> Walk<'a> {
    /// Stops the walk with `error`, returned as the parse's outcome.
    fn fail<E: de::Error>(&mut self, error: ParseError) -> E {
        let text = error.to_string();
        self.error = Some(error);
        E::custom(text)
    }

    /// Counts one more value; its ordinal (1-based), or the error past the bound.
    fn count<E: de::Error>(&mut self) -> Result<u32, E> {
        if self.values >= MAX_VALUES {
            return Err(self.fail(ParseError::TooManyElements));
        }
        self.values += 1;
        Ok(self.values)
    }

    fn push(&mut self, path: Cow<'a, str>, value: Cow<'a, str>, parent: u32) {
        self.fields.push(Some(Field {
            path,
            value,
            parent,
        }));
    }
}

/// The root: must be an object.
struct RootVisitor<'w, 'a>(&'w mut Walk<'a>);

impl<'de, 'w> Visitor<'de> for RootVisitor<'w, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(name) = map.next_key_seed(KeySeed(&mut *self.0))? {
            map.next_value_seed(ValueSeed {
                walk: &mut *self.0,
                path: name,
                parent: 0,
                depth: 0,
            })?;
        }
        Ok(())
    }

    // Anything else at the root.
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.0.fail(ParseError::NotAnObject))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(self.0.fail(ParseError::NotAnObject))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(self.0.fail(ParseError::NotAnObject))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(self.0.fail(ParseError::NotAnObject))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(self.0.fail(ParseError::NotAnObject))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(self.0.fail(ParseError::NotAnObject))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(self.0.fail(ParseError::NotAnObject))
    }
}

/// A key: borrowed from the input unless it had escapes; checked for length and shape.
struct KeySeed<'w, 'a>(&'w mut Walk<'a>);

impl<'de, 'w> DeserializeSeed<'de> for KeySeed<'w, 'de> {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, 'w> Visitor<'de> for KeySeed<'w, 'de> {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E: de::Error>(self, name: &'de str) -> Result<Self::Value, E> {
        self.check(name)?;
        Ok(Cow::Borrowed(name))
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        self.check(name)?;
        Ok(Cow::Owned(name.to_owned()))
    }
}

impl KeySeed<'_, '_> {
    fn check<E: de::Error>(self, name: &str) -> Result<(), E> {
        if name.len() > MAX_NAME_LEN {
            return Err(self.0.fail(ParseError::NameTooLong));
        }
        if name.is_empty() || name.contains('/') {
            return Err(self.0.fail(ParseError::InvalidName));
        }
        Ok(())
    }
}

/// A value at `path`, inside the object or array numbered `parent` (0: the root), itself
/// `depth` containers below the root.
struct ValueSeed<'w, 'a> {
    walk: &'w mut Walk<'a>,
    path: Cow<'a, str>,
    parent: u32,
    depth: usize,
}

impl<'de, 'w> DeserializeSeed<'de> for ValueSeed<'w, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, 'w> ValueSeed<'w, 'de> {
    fn leaf<E: de::Error>(self, value: Cow<'de, str>) -> Result<(), E> {
        self.walk.count::<E>()?;
        self.walk.push(self.path, value, self.parent);
        Ok(())
    }

    /// Opens an object or array: counted, and refused past the depth bound.
    fn open<E: de::Error>(&mut self) -> Result<u32, E> {
        if self.depth >= MAX_DEPTH {
            return Err(self.walk.fail(ParseError::TooDeep));
        }
        self.walk.count()
    }

    fn child(&mut self, path: Cow<'de, str>, parent: u32) -> ValueSeed<'_, 'de> {
        ValueSeed {
            walk: &mut *self.walk,
            path,
            parent,
            depth: self.depth + 1,
        }
    }
}

impl<'de, 'w> Visitor<'de> for ValueSeed<'w, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<(), E> {
        self.leaf(Cow::Borrowed(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        self.leaf(Cow::Owned(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<(), E> {
        self.leaf(Cow::Owned(value))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<(), E> {
        self.leaf(Cow::Borrowed(if value { "true" } else { "false" }))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.leaf(Cow::Owned(value.to_string()))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.leaf(Cow::Owned(value.to_string()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        // serde_json reads only finite numbers; its writer gives the shortest exact text.
        let text = serde_json::Number::from_f64(value).map_or_else(String::new, |n| n.to_string());
        self.leaf(Cow::Owned(text))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.leaf(Cow::Borrowed(""))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let ordinal = self.open()?;
        let mut empty = true;
        while let Some(name) = map.next_key_seed(KeySeed(&mut *self.walk))? {
            empty = false;
            let path = Cow::Owned(format!("{}/{name}", self.path));
            map.next_value_seed(self.child(path, ordinal))?;
        }
        if empty {
            self.walk.push(self.path, Cow::Borrowed(""), self.parent);
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let ordinal = self.open()?;
        let mut empty = true;
        loop {
            let path = self.path.clone();
            if seq.next_element_seed(self.child(path, ordinal))?.is_none() {
                break;
            }
            empty = false;
        }
        if empty {
            self.walk.push(self.path, Cow::Borrowed(""), self.parent);
        }
        Ok(())
    }
}

/// Appends `text` as a JSON string (quoted, escaped as JSON requires).
pub(crate) fn push_string(out: &mut String, text: &str) {
    out.reserve(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // U+2028/2029 are valid JSON but break JavaScript readers; escaped like controls.
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: &str) -> Vec<(String, String, u32)> {
        leaf_fields(json.as_bytes())
            .unwrap_or_else(|error| panic!("{error}: {json}"))
            .into_iter()
            .flatten()
            .map(|f| (f.path.into_owned(), f.value.into_owned(), f.parent))
            .collect()
    }

    fn error(json: &str) -> ParseError {
        leaf_fields(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn scalars_objects_and_arrays_flatten_like_xml() {
        let got = fields(
            r#"{"A":"x","N":1714112445,"F":23.137466,"Neg":-3,"B":true,"Z":null,
                "O":{"P":"q","Deep":{"R":"s"}},"L":[{"T":"1"},{"T":"2"}],"S":["a","b"],
                "E":{},"EA":[]}"#,
        );
        let paths: Vec<_> = got
            .iter()
            .map(|(p, v, _)| (p.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            paths,
            [
                ("A", "x"),
                ("N", "1714112445"),
                ("F", "23.137466"),
                ("Neg", "-3"),
                ("B", "true"),
                ("Z", ""),
                ("O/P", "q"),
                ("O/Deep/R", "s"),
                ("L/T", "1"),
                ("L/T", "2"),
                ("S", "a"),
                ("S", "b"),
                ("E", ""),
                ("EA", ""),
            ]
        );
        // The two `L` items have different parents; both `S` items share the array's.
        assert_ne!(got[8].2, got[9].2);
        assert_eq!(got[10].2, got[11].2);
        assert_eq!(got[0].2, 0);
    }

    #[test]
    fn escapes_are_resolved_and_plain_text_is_borrowed() {
        let parsed = leaf_fields(br#"{"A":"plain","B\u0041":"a\"b\\c\n\u4f60"}"#).unwrap();
        let a = parsed[0].as_ref().unwrap();
        assert!(matches!(a.value, Cow::Borrowed("plain")));
        let b = parsed[1].as_ref().unwrap();
        assert_eq!((b.path.as_ref(), b.value.as_ref()), ("BA", "a\"b\\c\n你"));
    }

    #[test]
    fn big_integers_keep_every_digit() {
        // 视频号小店 order ids are 19 digits.
        let got = fields(r#"{"order_id":3705115058471208928,"u":18446744073709551615}"#);
        assert_eq!(got[0].1, "3705115058471208928");
        assert_eq!(got[1].1, "18446744073709551615");
    }

    #[test]
    fn bounds_and_errors_are_fixed_texts() {
        let nested =
            |depth: usize| format!("{{\"a\":{}1{}}}", "[".repeat(depth), "]".repeat(depth));
        assert!(leaf_fields(nested(MAX_DEPTH).as_bytes()).is_ok());
        assert_eq!(error(&nested(MAX_DEPTH + 1)), ParseError::TooDeep);
        // Far past serde_json's own limit of 128: still our error, no stack growth.
        assert_eq!(error(&nested(100_000)), ParseError::TooDeep);

        let many = |count: u32| {
            let items: Vec<_> = (0..count).map(|i| i.to_string()).collect();
            format!("{{\"a\":[{}]}}", items.join(","))
        };
        // The array itself is one value.
        assert!(leaf_fields(many(MAX_VALUES - 1).as_bytes()).is_ok());
        assert_eq!(error(&many(MAX_VALUES)), ParseError::TooManyElements);

        let long = "k".repeat(MAX_NAME_LEN + 1);
        assert_eq!(error(&format!("{{\"{long}\":1}}")), ParseError::NameTooLong);
        assert_eq!(error(r#"{"a/b":1}"#), ParseError::InvalidName);
        assert_eq!(error(r#"{"":1}"#), ParseError::InvalidName);
        assert_eq!(error("[1]"), ParseError::NotAnObject);
        assert_eq!(error("\"x\""), ParseError::NotAnObject);
        assert_eq!(error(r#"{"a":1} x"#), ParseError::TrailingContent);
        assert_eq!(error(r#"{"a":1}{}"#), ParseError::TrailingContent);
        assert_eq!(
            error(r#"{"a":"#),
            ParseError::Syntax("unexpected end of JSON")
        );
        assert_eq!(error(r#"{"a":tru}"#), ParseError::Syntax("invalid JSON"));
        assert_eq!(
            error(r#"{"a":"\ud800"}"#),
            ParseError::Syntax("invalid JSON")
        );
        assert_eq!(
            error("{\"a\":\"\u{1}\"}"),
            ParseError::Syntax("invalid JSON")
        );
        assert_eq!(error(r#"{"a":1e999}"#), ParseError::Syntax("invalid JSON"));
    }

    #[test]
    fn errors_never_quote_the_input() {
        for bad in [
            r#"{"secret_openid_o9AgO5":tru}"#,
            r#"{"a":"secret_openid_o9AgO5"#,
            r#"{"a":1} secret_openid_o9AgO5"#,
            r#"["secret_openid_o9AgO5"]"#,
        ] {
            let shown = error(bad).to_string();
            assert!(!shown.contains("secret"), "{shown}");
            assert!(shown.len() <= 60, "{shown}");
        }
    }

    #[test]
    fn strings_are_written_as_valid_json() {
        let mut out = String::new();
        push_string(&mut out, "a\"b\\c\n\r\t\u{1}\u{2028}你");
        assert_eq!(out, r#""a\"b\\c\n\r\t\u0001\u2028你""#);
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, "a\"b\\c\n\r\t\u{1}\u{2028}你");
    }
}
