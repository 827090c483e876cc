//! [`ParseError`]: why a body is not a WeChat XML or JSON message.

use std::fmt;

/// Why a body is not a WeChat XML or JSON message (or reply).
///
/// `Display` is short, names the element at fault but never its content (which may hold user
/// text or openids), and is used as the body of a 400 answer. The bounds (depth, element or
/// value count, name length) are the same for both formats.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// The body is not UTF-8.
    NotUtf8,
    /// The XML (or JSON) is not well formed: a fixed description of what is wrong, never a name or
    /// text from the document (the body may not be authenticated yet).
    Syntax(&'static str),
    /// The root element is missing or is not `<xml>`.
    UnexpectedRoot,
    /// A `<!DOCTYPE>`: refused, so no entity is ever expanded.
    DocType,
    /// Elements nested deeper than WeChat ever nests them.
    TooDeep,
    /// An element name longer than any WeChat uses.
    NameTooLong,
    /// More elements than any WeChat message has.
    TooManyElements,
    /// Something other than whitespace or comments after the root element (in JSON: after
    /// the object).
    TrailingContent,
    /// A JSON body that is not an object (an array, a string…).
    NotAnObject,
    /// A JSON key that is empty or holds `/` (which joins the names of a field's path).
    InvalidName,
    /// An entity other than the five predefined ones and character references.
    UnknownEntity,
    /// A required element is absent.
    MissingField(&'static str),
    /// An element's content does not have the required form (e.g. not a number).
    InvalidField(&'static str),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotUtf8 => f.write_str("body is not UTF-8"),
            Self::Syntax(reason) => write!(f, "syntax error ({reason})"),
            Self::UnexpectedRoot => f.write_str("root element is not <xml>"),
            Self::DocType => f.write_str("DOCTYPE is not allowed"),
            Self::TooDeep => f.write_str("elements are nested too deeply"),
            Self::NameTooLong => f.write_str("an element name is too long"),
            Self::TooManyElements => f.write_str("too many elements"),
            Self::TrailingContent => f.write_str("content after the root element"),
            Self::NotAnObject => f.write_str("JSON body is not an object"),
            Self::InvalidName => f.write_str("a JSON key is empty or holds `/`"),
            Self::UnknownEntity => f.write_str("unknown entity reference"),
            Self::MissingField(name) => write!(f, "missing <{name}>"),
            Self::InvalidField(name) => write!(f, "<{name}> is not valid"),
        }
    }
}

impl std::error::Error for ParseError {}
