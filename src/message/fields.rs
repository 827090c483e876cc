//! A single pull-parser walk that flattens a WeChat XML document into its leaf fields.
//!
//! The input is checked for UTF-8 once; every name and value is then a slice of it, found
//! by its offset, so nothing is validated or copied twice.

use std::borrow::Cow;
use std::str::FromStr;

use quick_xml::Reader;
use quick_xml::escape::unescape;
use quick_xml::events::Event;

use super::ParseError;

/// WeChat nests at most four levels below the root (`SendPicsInfo/PicList/item/PicMd5Sum`).
const MAX_DEPTH: usize = 8;

/// WeChat's longest element names are about 30 bytes (`ComponentVerifyTicket`).
const MAX_NAME_LEN: usize = 64;

/// WeChat's largest pushes (mass-send reports) have a few hundred elements.
const MAX_ELEMENTS: u32 = 2048;

// With these bounds a path is at most 8 × 65 bytes, and a body — read before it can be
// authenticated in safe mode — cannot make the walk allocate more than a small multiple of
// its own size.

/// A leaf element: its path below the root, its text, and which element holds it (so that
/// repeated `item`s can be told apart).
#[derive(Debug)]
pub(crate) struct Field<'a> {
    pub(crate) path: Cow<'a, str>,
    pub(crate) value: Cow<'a, str>,
    pub(crate) parent: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Root {
    Before,
    Inside,
    After,
}

/// Walks `xml` once (each field wrapped in `Some`, ready to be taken). Leaf text is the concatenation of its text (entities resolved) and
/// CDATA, untrimmed; whitespace between child elements is ignored.
pub(crate) fn leaf_fields(xml: &[u8]) -> Result<Vec<Option<Field<'_>>>, ParseError> {
    let xml = std::str::from_utf8(xml).map_err(|_| ParseError::NotUtf8)?;
    let mut reader = Reader::from_str(xml);
    let mut fields = Vec::with_capacity(8);
    // (name, element ordinal) of each open element below the root.
    let mut open = OpenElements::default();
    let mut ordinal = 0u32;
    let mut root = Root::Before;
    // Text gathered for the innermost open element; a child element discards it.
    let mut text: Option<Cow<'_, str>> = None;
    // The last tag was a start tag: an end tag right after it closes an empty leaf.
    let mut just_opened = false;

    loop {
        let event = reader.read_event().map_err(syntax_error)?;
        match event {
            Event::Start(start) if root != Root::Inside => {
                check_root(root, start.name().as_ref())?;
                root = Root::Inside;
            }
            Event::Empty(start) if root != Root::Inside => {
                check_root(root, start.name().as_ref())?;
                root = Root::After;
            }
            Event::Start(start) => {
                ordinal = next_ordinal(ordinal)?;
                open.push(element_name(xml, start.name().as_ref())?, ordinal)?;
                text = None;
                just_opened = true;
            }
            Event::Empty(start) => {
                ordinal = next_ordinal(ordinal)?;
                let name = element_name(xml, start.name().as_ref())?;
                fields.push(Some(leaf(open.as_slice(), name, Cow::Borrowed(""))));
                text = None;
                just_opened = false;
            }
            Event::End(_) => match open.pop() {
                None => root = Root::After,
                Some((name, _)) => {
                    let value = text.take().or(just_opened.then_some(Cow::Borrowed("")));
                    if let Some(value) = value {
                        fields.push(Some(leaf(open.as_slice(), name, value)));
                    }
                    just_opened = false;
                }
            },
            // Whitespace after a child element (pretty-printed XML) is not the parent's text.
            Event::Text(raw) if !just_opened && raw.iter().all(u8::is_ascii_whitespace) => {}
            Event::Text(raw) => {
                if root == Root::Inside && !open.is_empty() {
                    let piece = match slice_of(xml, &raw)? {
                        Cow::Borrowed(raw) => unescape(raw),
                        Cow::Owned(raw) => unescape(&raw).map(|text| Cow::Owned(text.into_owned())),
                    };
                    append(&mut text, piece.map_err(|_| ParseError::UnknownEntity)?);
                } else if !raw.iter().all(u8::is_ascii_whitespace) {
                    return Err(outside_root(root));
                }
            }
            Event::CData(raw) => {
                if root == Root::Inside && !open.is_empty() {
                    append(&mut text, slice_of(xml, &raw)?);
                } else if root != Root::Inside {
                    return Err(outside_root(root));
                }
            }
            Event::DocType(_) => return Err(ParseError::DocType),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => {
                return match root {
                    Root::After => Ok(fields),
                    Root::Before => Err(ParseError::UnexpectedRoot),
                    Root::Inside => Err(ParseError::Syntax("unexpected end of document")),
                };
            }
        }
    }
}

/// The parser's error as a fixed text. quick-xml's own messages quote element names from
/// the document (a mismatched end tag's name, up to the whole body), which must reach
/// neither a log line nor a 400 body.
fn syntax_error(error: quick_xml::Error) -> ParseError {
    use quick_xml::Error;
    use quick_xml::errors::{IllFormedError, SyntaxError};
    ParseError::Syntax(match error {
        Error::Syntax(SyntaxError::InvalidBangMarkup) => "unknown markup after `<!`",
        Error::Syntax(SyntaxError::UnclosedPIOrXmlDecl) => "unclosed `<?`",
        Error::Syntax(SyntaxError::UnclosedComment) => "unclosed comment",
        Error::Syntax(SyntaxError::UnclosedDoctype) => "unclosed DOCTYPE",
        Error::Syntax(SyntaxError::UnclosedCData) => "unclosed CDATA section",
        Error::Syntax(SyntaxError::UnclosedTag) => "unclosed tag",
        Error::IllFormed(IllFormedError::MismatchedEndTag { .. }) => {
            "an end tag does not match its start tag"
        }
        Error::IllFormed(IllFormedError::UnmatchedEndTag(_)) => "an end tag closes no element",
        Error::IllFormed(IllFormedError::MissingEndTag(_)) => "an element is not closed",
        Error::IllFormed(IllFormedError::DoubleHyphenInComment) => "`--` inside a comment",
        Error::IllFormed(_) => "ill-formed declaration",
        Error::InvalidAttr(_) => "malformed attribute",
        Error::Encoding(_) => "bad encoding",
        Error::Escape(_) => "bad escape",
        Error::Namespace(_) => "bad namespace",
        Error::Io(_) => "read error",
    })
}

/// The elements open below the root, on the stack: WeChat never nests deeper than
/// [`MAX_DEPTH`], and deeper documents are refused.
struct OpenElements<'a> {
    elements: [(Cow<'a, str>, u32); MAX_DEPTH],
    len: usize,
}

impl Default for OpenElements<'_> {
    fn default() -> Self {
        Self {
            elements: std::array::from_fn(|_| (Cow::Borrowed(""), 0)),
            len: 0,
        }
    }
}

impl<'a> OpenElements<'a> {
    fn push(&mut self, name: Cow<'a, str>, ordinal: u32) -> Result<(), ParseError> {
        let slot = self.elements.get_mut(self.len).ok_or(ParseError::TooDeep)?;
        *slot = (name, ordinal);
        self.len += 1;
        Ok(())
    }

    fn pop(&mut self) -> Option<(Cow<'a, str>, u32)> {
        self.len = self.len.checked_sub(1)?;
        Some(std::mem::take(&mut self.elements[self.len]))
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn as_slice(&self) -> &[(Cow<'a, str>, u32)] {
        &self.elements[..self.len]
    }
}

fn next_ordinal(ordinal: u32) -> Result<u32, ParseError> {
    if ordinal >= MAX_ELEMENTS {
        return Err(ParseError::TooManyElements);
    }
    Ok(ordinal + 1)
}

fn element_name<'a>(xml: &'a str, name: &[u8]) -> Result<Cow<'a, str>, ParseError> {
    if name.len() > MAX_NAME_LEN {
        return Err(ParseError::NameTooLong);
    }
    slice_of(xml, name)
}

/// The first element must be `<xml>`, and nothing may follow it.
fn check_root(root: Root, name: &[u8]) -> Result<(), ParseError> {
    match root {
        Root::After => Err(ParseError::TrailingContent),
        _ if name != b"xml" => Err(ParseError::UnexpectedRoot),
        _ => Ok(()),
    }
}

fn outside_root(root: Root) -> ParseError {
    match root {
        Root::After => ParseError::TrailingContent,
        _ => ParseError::UnexpectedRoot,
    }
}

fn leaf<'a>(open: &[(Cow<'a, str>, u32)], name: Cow<'a, str>, value: Cow<'a, str>) -> Field<'a> {
    let parent = open.last().map_or(0, |(_, parent)| *parent);
    let path = if open.is_empty() {
        name
    } else {
        let mut path = String::with_capacity(32);
        for (ancestor, _) in open {
            path.push_str(ancestor);
            path.push('/');
        }
        path.push_str(&name);
        Cow::Owned(path)
    };
    Field {
        path,
        value,
        parent,
    }
}

fn append<'a>(text: &mut Option<Cow<'a, str>>, piece: Cow<'a, str>) {
    match text {
        None => *text = Some(piece),
        Some(existing) => existing.to_mut().push_str(&piece),
    }
}

/// The `&str` that `bytes` is a slice of: the reader hands out slices of the input, which
/// was checked for UTF-8 once, so this is an offset computation and a char-boundary check.
/// Anything else (never seen from a reader over a `&str`) is checked and copied.
fn slice_of<'a>(xml: &'a str, bytes: &[u8]) -> Result<Cow<'a, str>, ParseError> {
    let start = (bytes.as_ptr() as usize).wrapping_sub(xml.as_ptr() as usize);
    let borrowed = start
        .checked_add(bytes.len())
        .and_then(|end| xml.get(start..end))
        .filter(|slice| slice.as_ptr() == bytes.as_ptr());
    match borrowed {
        Some(slice) => Ok(Cow::Borrowed(slice)),
        None => std::str::from_utf8(bytes)
            .map(|text| Cow::Owned(text.to_owned()))
            .map_err(|_| ParseError::NotUtf8),
    }
}

/// The `(name below the prefix, text)` fields of one repeated element.
pub(crate) type Group<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// The walked fields, taken one by one into typed slots; what is left is `extra`.
pub(crate) struct Fields<'a> {
    fields: Vec<Option<Field<'a>>>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(fields: Vec<Option<Field<'a>>>) -> Self {
        Self { fields }
    }

    /// Whether a field at `path` is still there.
    pub(crate) fn has(&self, path: &str) -> bool {
        self.fields
            .iter()
            .any(|slot| slot.as_ref().is_some_and(|field| field.path == path))
    }

    /// Takes the first field at `path`.
    pub(crate) fn take(&mut self, path: &str) -> Option<Field<'a>> {
        self.fields
            .iter_mut()
            .find(|slot| slot.as_ref().is_some_and(|field| field.path == path))
            .and_then(Option::take)
    }

    pub(crate) fn optional(&mut self, path: &str) -> Option<String> {
        self.take(path).map(|field| field.value.into_owned())
    }

    /// The text of a required field, without copying it.
    pub(crate) fn required_text(&mut self, path: &'static str) -> Result<Cow<'a, str>, ParseError> {
        self.take(path)
            .map(|field| field.value)
            .ok_or(ParseError::MissingField(path))
    }

    pub(crate) fn required(&mut self, path: &'static str) -> Result<String, ParseError> {
        self.optional(path).ok_or(ParseError::MissingField(path))
    }

    pub(crate) fn optional_number<N: FromStr>(
        &mut self,
        path: &'static str,
    ) -> Result<Option<N>, ParseError> {
        self.take(path)
            .map(|field| {
                field
                    .value
                    .trim()
                    .parse()
                    .map_err(|_| ParseError::InvalidField(path))
            })
            .transpose()
    }

    pub(crate) fn number<N: FromStr>(&mut self, path: &'static str) -> Result<N, ParseError> {
        self.optional_number(path)?
            .ok_or(ParseError::MissingField(path))
    }

    /// Takes every field at `path`, in document order.
    pub(crate) fn all(&mut self, path: &str) -> Vec<String> {
        self.fields
            .iter_mut()
            .filter(|slot| slot.as_ref().is_some_and(|field| field.path == path))
            .filter_map(|slot| slot.take().map(|field| field.value.into_owned()))
            .collect()
    }

    /// Takes the fields below `prefix` grouped by the element holding them (one group per
    /// repeated `item`), in document order.
    pub(crate) fn groups(&mut self, prefix: &str) -> Vec<Group<'a>> {
        let mut groups: Vec<(u32, Group<'a>)> = Vec::new();
        for slot in &mut self.fields {
            let Some(field) = slot.take_if(|field| field.path.starts_with(prefix)) else {
                continue;
            };
            let name = match &field.path {
                Cow::Borrowed(path) => Cow::Borrowed(&path[prefix.len()..]),
                Cow::Owned(path) => Cow::Owned(path[prefix.len()..].to_owned()),
            };
            match groups.last_mut() {
                Some((parent, group)) if *parent == field.parent => group.push((name, field.value)),
                _ => groups.push((field.parent, vec![(name, field.value)])),
            }
        }
        groups.into_iter().map(|(_, group)| group).collect()
    }

    pub(crate) fn into_extra(self) -> Vec<(String, String)> {
        self.fields
            .into_iter()
            .flatten()
            .map(|field| (field.path.into_owned(), field.value.into_owned()))
            .collect()
    }
}
