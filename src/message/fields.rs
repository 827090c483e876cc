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
#[derive(Debug, PartialEq)]
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
///
/// WeChat's documents are flat and plain (`<xml>`, elements without attributes, text
/// without entities, CDATA), so they are read by [`scan_plain`], a scanner made for exactly
/// that; anything else it meets (a declaration, a comment, an entity, an attribute, an
/// error of any kind) hands the whole document to quick-xml, whose walk decides. Both give
/// the same fields, under the same bounds (tested against each other).
pub(crate) fn leaf_fields(xml: &[u8]) -> Result<Vec<Option<Field<'_>>>, ParseError> {
    let xml = std::str::from_utf8(xml).map_err(|_| ParseError::NotUtf8)?;
    match scan_plain(xml) {
        Some(fields) => Ok(fields),
        None => walk(xml),
    }
}

/// The quick-xml walk over a document checked for UTF-8: the reference for every document,
/// and the reader of all that [`scan_plain`] leaves to it.
fn walk(xml: &str) -> Result<Vec<Option<Field<'_>>>, ParseError> {
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

/// For the fuzz targets: the scanner and the walk give the same fields for `xml` (panics
/// if not), like the differential property tests below.
#[cfg(fuzzing)]
pub(crate) fn check_scanner(xml: &[u8]) {
    let Ok(xml) = std::str::from_utf8(xml) else {
        return;
    };
    if let Some(fields) = scan_plain(xml) {
        assert_eq!(Ok(fields), walk(xml), "the scanner and the walk disagree");
    }
}

/// Reads a plain WeChat document: optional whitespace, `<xml>`, then elements without
/// attributes (or `<Name/>`), holding text without `&` and CDATA sections, nested at most
/// [`MAX_DEPTH`] deep, at most [`MAX_ELEMENTS`] of them, names of at most [`MAX_NAME_LEN`]
/// bytes of `[A-Za-z0-9_.:-]`, then `</xml>` and optional whitespace. Gives the fields the
/// quick-xml [`walk`] gives, or `None` for anything else (then the walk reads it, and reports
/// any error): it never decides that a document is wrong.
fn scan_plain(xml: &str) -> Option<Vec<Option<Field<'_>>>> {
    let bytes = xml.as_bytes();
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
    let mut at = start + b"<xml>".len();
    if bytes.get(start..at)? != b"<xml>" {
        return None;
    }
    let mut fields = Vec::with_capacity(8);
    let mut open: [(&str, u32); MAX_DEPTH] = [("", 0); MAX_DEPTH];
    let mut depth = 0;
    let mut ordinal = 0u32;
    // As in the walk: the text gathered for the innermost open element, and whether the
    // last tag was a start tag (an end tag right after it closes an empty leaf).
    let mut text: Option<Cow<'_, str>> = None;
    let mut just_opened = false;
    loop {
        // A text run, up to the next tag; an entity is left to the walk.
        let mut lt = at;
        loop {
            match *bytes.get(lt)? {
                b'<' => break,
                b'&' => return None,
                _ => lt += 1,
            }
        }
        if lt > at {
            let run = &xml[at..lt];
            if !just_opened && run.bytes().all(|b| b.is_ascii_whitespace()) {
                // Whitespace after a child element (pretty-printed XML), as in the walk.
            } else if depth > 0 {
                append(&mut text, Cow::Borrowed(run));
            } else if !run.bytes().all(|b| b.is_ascii_whitespace()) {
                return None; // text between the root's children
            }
        }
        at = lt + 1;
        match *bytes.get(at)? {
            b'/' if depth == 0 => {
                // The root's end: only whitespace may follow.
                let rest = bytes.get(at + 1..)?.strip_prefix(b"xml>")?;
                return rest.iter().all(u8::is_ascii_whitespace).then_some(fields);
            }
            b'/' => {
                depth -= 1;
                let (name, _) = open[depth];
                let rest = &bytes[at + 1..];
                if !(rest.starts_with(name.as_bytes()) && rest.get(name.len()) == Some(&b'>')) {
                    return None;
                }
                at += name.len() + 2;
                let value = text.take().or(just_opened.then_some(Cow::Borrowed("")));
                if let Some(value) = value {
                    fields.push(Some(plain_leaf(&open[..depth], name, value)));
                }
                just_opened = false;
            }
            b'!' => {
                if depth == 0 || !bytes[at..].starts_with(b"![CDATA[") {
                    return None;
                }
                let content = at + b"![CDATA[".len();
                let end = content + find_cdata_end(&bytes[content..])?;
                append(&mut text, Cow::Borrowed(&xml[content..end]));
                at = end + b"]]>".len();
            }
            _ => {
                let len = bytes[at..]
                    .iter()
                    .position(|&b| !is_name_byte(b))
                    .filter(|len| (1..=MAX_NAME_LEN).contains(len))?;
                let name = &xml[at..at + len];
                at += len;
                let empty = match bytes.get(at..)? {
                    [b'>', ..] => false,
                    [b'/', b'>', ..] => true,
                    _ => return None,
                };
                at += 1 + usize::from(empty);
                if ordinal >= MAX_ELEMENTS {
                    return None;
                }
                ordinal += 1;
                text = None;
                if empty {
                    fields.push(Some(plain_leaf(&open[..depth], name, Cow::Borrowed(""))));
                    just_opened = false;
                } else {
                    *open.get_mut(depth)? = (name, ordinal);
                    depth += 1;
                    just_opened = true;
                }
            }
        }
    }
}

/// Where `]]>` starts (a byte search: no substring searcher set up each time).
pub(super) fn find_cdata_end(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    loop {
        let at = from + bytes[from..].iter().position(|&b| b == b']')?;
        if bytes[at..].starts_with(b"]]>") {
            return Some(at);
        }
        from = at + 1;
    }
}

/// A byte of a name the scanner takes as it is: letters, digits and `_ . : -`.
fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b':' | b'-')
}

/// [`leaf`] for names borrowed from the document.
fn plain_leaf<'a>(open: &[(&'a str, u32)], name: &'a str, value: Cow<'a, str>) -> Field<'a> {
    let parent = open.last().map_or(0, |(_, parent)| *parent);
    let path = if open.is_empty() {
        Cow::Borrowed(name)
    } else {
        let mut path = String::with_capacity(32);
        for (ancestor, _) in open {
            path.push_str(ancestor);
            path.push('/');
        }
        path.push_str(name);
        Cow::Owned(path)
    };
    Field {
        path,
        value,
        parent,
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

#[cfg(test)]
mod tests {
    //! The plain scanner against the quick-xml walk: the same fields for every document it
    //! reads, and every other document handed to the walk (which reports its errors).

    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    use super::*;

    const TEXT: &str = "<xml><ToUserName><![CDATA[gh_97417a04a28d]]></ToUserName>\
        <FromUserName><![CDATA[oia2Tj-jewbmiOUlr6X-1crbLOvLw]]></FromUserName>\
        <CreateTime>1715943329</CreateTime><MsgType><![CDATA[text]]></MsgType>\
        <Content><![CDATA[你好，我想查一下我的订单状态]]></Content><MsgId>24567890123456789</MsgId></xml>";

    /// WeChat's documented `pic_sysphoto` push, as pretty-printed in its docs.
    const PICS: &str = "<xml>\n  <ToUserName><![CDATA[gh_e136c6e50636]]></ToUserName>\n  \
        <FromUserName><![CDATA[oMgHVjngRipVsoxg6TuX3vz6glDg]]></FromUserName>\n  \
        <CreateTime>1408090651</CreateTime>\n  <MsgType><![CDATA[event]]></MsgType>\n  \
        <Event><![CDATA[pic_sysphoto]]></Event>\n  <EventKey><![CDATA[6]]></EventKey>\n  \
        <SendPicsInfo>\n    <Count>1</Count>\n    <PicList>\n      <item>\n        \
        <PicMd5Sum><![CDATA[1b5f7c23b5bf75682a53e7b6d163e185]]></PicMd5Sum>\n      </item>\n    \
        </PicList>\n  </SendPicsInfo>\n</xml>\n";

    fn same(xml: &str) -> Option<Vec<Option<Field<'_>>>> {
        let scanned = scan_plain(xml);
        if let Some(fields) = &scanned {
            assert_eq!(Ok(fields), walk(xml).as_ref(), "{xml:?}");
        }
        assert_eq!(
            leaf_fields(xml.as_bytes()),
            walk(xml),
            "{xml:?}: leaf_fields and the walk disagree"
        );
        scanned
    }

    #[test]
    fn wechat_documents_are_scanned_and_read_as_the_walk_reads_them() {
        for xml in [
            TEXT,
            PICS,
            "<xml></xml>",
            " \r\n<xml><a></a><b/><c><![CDATA[]]></c><d>x<![CDATA[<y>]]>z</d></xml>\n",
            "<xml><a>text with > and ]] in it</a></xml>",
            "<xml><a><b>1</b>  <b>2</b></a><a><b>3</b></a></xml>",
            // Whitespace after a child element is not the parent's text (pretty-printed).
            "<xml>\n <a>\n  <b>1</b>\n </a>\n</xml>",
            "<xml><a><b/> <![CDATA[x]]> </a><c> </c><d>\n<![CDATA[y]]>\n</d></xml>",
        ] {
            assert!(same(xml).is_some(), "not scanned: {xml:?}");
        }
        let fields = scan_plain(PICS).unwrap();
        let paths: Vec<_> = fields
            .iter()
            .map(|field| field.as_ref().unwrap().path.as_ref())
            .collect();
        assert!(
            paths.contains(&"SendPicsInfo/PicList/item/PicMd5Sum"),
            "{paths:?}"
        );
    }

    #[test]
    fn anything_unusual_is_handed_to_the_walk() {
        for xml in [
            "<?xml version=\"1.0\"?><xml><a>1</a></xml>",
            "<!-- c --><xml><a>1</a></xml>",
            "<xml><!-- c --><a>1</a></xml>",
            "<xml><a>&lt;1&gt;</a></xml>",
            "<xml><a>&bogus;</a></xml>",
            "<xml><a x=\"1\">1</a></xml>",
            "<xml><a >1</a ></xml>",
            "\u{feff}<xml><a>1</a></xml>",
            "<xml/>",
            "<xml><![CDATA[in the root]]><a>1</a></xml>",
            "<xml>text in the root</xml>",
            "<xml><a>1</a></xml><!-- after -->",
            "<xml><a>1</a></xml>trailing",
            "<xml><a>1</b></xml>",
            "<xml><a>1</a>",
            "<xml><a><![CDATA[unclosed</a></xml>",
            "<root><a>1</a></root>",
            "",
        ] {
            assert!(same(xml).is_none(), "scanned: {xml:?}");
        }
    }

    #[test]
    fn bounds_hold_on_both_paths() {
        let name = |len| "n".repeat(len);
        let at_bound = format!("<xml><{0}>1</{0}></xml>", name(MAX_NAME_LEN));
        assert!(same(&at_bound).is_some());
        let over = format!("<xml><{0}>1</{0}></xml>", name(MAX_NAME_LEN + 1));
        assert_eq!(leaf_fields(over.as_bytes()), Err(ParseError::NameTooLong));

        let nested = |depth| {
            format!(
                "<xml>{}x{}</xml>",
                "<a>".repeat(depth),
                "</a>".repeat(depth)
            )
        };
        assert!(same(&nested(MAX_DEPTH)).is_some());
        assert_eq!(
            leaf_fields(nested(MAX_DEPTH + 1).as_bytes()),
            Err(ParseError::TooDeep)
        );

        let many = |count| format!("<xml>{}</xml>", "<b/>".repeat(count));
        assert!(same(&many(MAX_ELEMENTS as usize)).is_some());
        assert_eq!(
            leaf_fields(many(MAX_ELEMENTS as usize + 1).as_bytes()),
            Err(ParseError::TooManyElements)
        );
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(vec!["ToUserName", "Content", "item", "a", "b", "xml"])
                .prop_map(str::to_owned),
            2 => "[A-Za-z_][A-Za-z0-9_.:-]{0,6}",
            1 => Just("x".repeat(MAX_NAME_LEN)),
            1 => Just("x".repeat(MAX_NAME_LEN + 1)),
            1 => prop::sample::select(vec!["a b", "a=1", "", "é", "a/", "-", "1"])
                .prop_map(str::to_owned),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-z0-9 ]{0,8}",
            2 => prop::sample::select(vec!["", "\n  ", " ", "\t"]).prop_map(str::to_owned),
            2 => "[^<&]{0,6}",
            1 => prop::sample::select(vec![
                "&amp;", "&lt;b&gt;", "&#20320;", "&bogus;", "&", "]]>", ">", "\r\n", "<", "<!",
            ])
            .prop_map(str::to_owned),
        ]
    }

    fn cdata() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z<>&\\] ]{0,8}".prop_map(|content| format!("<![CDATA[{content}]]>")),
            Just("<![CDATA[".to_owned()),
            Just("<![CDATA[a]]]]><![CDATA[>]]>".to_owned()),
        ]
    }

    /// An element: a leaf of text and CDATA pieces, an empty one, one with children, or
    /// something odd (a comment, a stray or mismatched end tag, attributes).
    fn element() -> impl Strategy<Value = String> {
        let leaf = (
            name(),
            prop::collection::vec(prop_oneof![text(), cdata()], 0..3),
            prop::bool::weighted(0.9),
        )
            .prop_map(|(name, pieces, closed)| {
                let end = if closed {
                    format!("</{name}>")
                } else {
                    String::new()
                };
                format!("<{name}>{}{end}", pieces.concat())
            });
        let odd = prop_oneof![
            name().prop_map(|name| format!("<{name}/>")),
            name().prop_map(|name| format!("</{name}>")),
            name().prop_map(|name| format!("<{name} k=\"v\">1</{name}>")),
            Just("<!-- note -->".to_owned()),
            Just("<?pi x?>".to_owned()),
        ];
        let single = prop_oneof![8 => leaf, 2 => odd];
        single.prop_recursive(10, 64, 4, |inner| {
            (
                name(),
                prop::collection::vec((inner, text()), 0..4),
                prop::bool::weighted(0.95),
            )
                .prop_map(|(name, children, closed)| {
                    let body: String = children
                        .into_iter()
                        .map(|(child, between)| child + &between)
                        .collect();
                    let end = if closed {
                        format!("</{name}>")
                    } else {
                        String::new()
                    };
                    format!("<{name}>{body}{end}")
                })
        })
    }

    /// A document as WeChat writes them (which the scanner should read), with and without
    /// whitespace between elements.
    fn plain_document() -> impl Strategy<Value = String> {
        let name = "[A-Za-z_][A-Za-z0-9_]{0,7}";
        let piece = prop_oneof![
            "[a-z0-9 ]{0,8}",
            "[^<&]{0,6}",
            "[a-z<>& ]{0,8}".prop_map(|content| format!("<![CDATA[{content}]]>")),
        ];
        let leaf = (name, prop::collection::vec(piece, 0..3))
            .prop_map(|(name, pieces)| format!("<{name}>{}</{name}>", pieces.concat()));
        let element = leaf.prop_recursive(4, 32, 4, move |inner| {
            (name, prop::collection::vec(inner, 0..4), "[ \n]{0,2}").prop_map(
                |(name, children, between)| {
                    format!("<{name}>{between}{}</{name}>", children.join(&between))
                },
            )
        });
        (prop::collection::vec(element, 0..8), "[ \n]{0,2}")
            .prop_map(|(children, between)| format!("<xml>{}</xml>", children.join(&between)))
    }

    fn document() -> impl Strategy<Value = String> {
        prop_oneof![plain_document(), any_document()]
    }

    fn any_document() -> impl Strategy<Value = String> {
        let before = prop::sample::select(vec![
            "",
            "",
            " \n",
            "<?xml version=\"1.0\"?>",
            "\u{feff}",
            "x",
        ]);
        let after = prop::sample::select(vec!["", "", "\n", "<!-- end -->", "x", "<xml></xml>"]);
        let root = prop::sample::select(vec!["xml", "xml", "xml", "root"]);
        (
            before,
            root,
            prop::collection::vec((element(), text()), 0..6),
            after,
        )
            .prop_map(|(before, root, children, after)| {
                let body: String = children
                    .into_iter()
                    .map(|(child, between)| child + &between)
                    .collect();
                format!("{before}<{root}>{body}</{root}>{after}")
            })
    }

    /// The generated documents exercise both paths (else the property proves little).
    #[test]
    fn the_generator_reaches_both_paths() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = document();
        let (mut scanned, total) = (0, 2000);
        for _ in 0..total {
            let xml = strategy.new_tree(&mut runner).unwrap().current();
            scanned += usize::from(scan_plain(&xml).is_some());
        }
        assert!(
            scanned > total / 10 && scanned < total * 9 / 10,
            "{scanned} of {total} scanned"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn the_scanner_reads_what_the_walk_reads(xml in document()) {
            if let Some(fields) = scan_plain(&xml) {
                prop_assert_eq!(Ok(fields), walk(&xml));
            }
            prop_assert_eq!(leaf_fields(xml.as_bytes()), walk(&xml));
        }

        #[test]
        fn a_broken_document_too(xml in document(), at in any::<prop::sample::Index>(),
                                 cut in 0..4usize, insert in "[<>/!\\[\\]&]{0,2}") {
            let mut chars: Vec<char> = xml.chars().collect();
            let at = at.index(chars.len() + 1);
            let end = (at + cut).min(chars.len());
            chars.splice(at..end, insert.chars());
            let xml: String = chars.into_iter().collect();
            if let Some(fields) = scan_plain(&xml) {
                prop_assert_eq!(Ok(fields), walk(&xml));
            }
            prop_assert_eq!(leaf_fields(xml.as_bytes()), walk(&xml));
        }

        #[test]
        fn any_text_at_all(xml in "[<>/!\\[\\]&a-c xml;C-DAT]{0,40}") {
            if let Some(fields) = scan_plain(&xml) {
                prop_assert_eq!(Ok(fields), walk(&xml));
            }
        }
    }
}
