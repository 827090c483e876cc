//! A single pull-parser walk that flattens a WeChat XML document into its leaf fields.

use std::borrow::Cow;

use quick_xml::Reader;
use quick_xml::events::{BytesRef, Event};

use super::ParseError;

/// WeChat nests at most four levels below the root (`SendPicsInfo/PicList/item/PicMd5Sum`).
const MAX_DEPTH: usize = 8;

/// A leaf element: its path below the root, its text, and which element holds it (so that
/// repeated `item`s can be told apart).
#[derive(Debug)]
pub(crate) struct Field<'a> {
    pub(crate) path: Cow<'a, str>,
    pub(crate) value: Cow<'a, str>,
    pub(crate) parent: u32,
}

/// Walks `xml` once. Leaf text is the concatenation of its text, CDATA and references,
/// untrimmed; whitespace between child elements is ignored.
pub(crate) fn leaf_fields(xml: &[u8]) -> Result<Vec<Field<'_>>, ParseError> {
    let xml = std::str::from_utf8(xml).map_err(|_| ParseError::NotUtf8)?;
    let mut reader = Reader::from_str(xml);
    let mut fields = Vec::with_capacity(8);
    // (name, element ordinal) of each open element below the root.
    let mut open: Vec<(Cow<'_, str>, u32)> = Vec::with_capacity(MAX_DEPTH);
    let mut ordinal = 0u32;
    let mut root = RootState::Before;
    // Text gathered for the innermost open element; a child element discards it.
    let mut text: Option<Cow<'_, str>> = None;

    loop {
        let event = reader
            .read_event()
            .map_err(|error| ParseError::Syntax(error.to_string()))?;
        match event {
            Event::Start(start) => {
                ordinal += 1;
                match root {
                    RootState::Before => {
                        if start.name().as_ref() != "xml" {
                            return Err(ParseError::UnexpectedRoot);
                        }
                        root = RootState::Inside;
                        continue;
                    }
                    RootState::After => return Err(ParseError::TrailingContent),
                    RootState::Inside => {}
                }
                if open.len() >= MAX_DEPTH {
                    return Err(ParseError::TooDeep);
                }
                let name = element_name(xml, reader.buffer_position(), 1, &start);
                open.push((name, ordinal));
                text = None;
            }
            Event::End(_) => match open.pop() {
                None => root = RootState::After,
                Some((name, _)) => {
                    if let Some(value) = text.take() {
                        let parent = open.last().map_or(0, |&(_, parent)| parent);
                        fields.push(Field {
                            path: path(&open, name),
                            value,
                            parent,
                        });
                    }
                }
            },
            Event::Empty(start) => {
                ordinal += 1;
                match root {
                    RootState::Before if start.name().as_ref() == "xml" => {
                        root = RootState::After;
                    }
                    RootState::Before => return Err(ParseError::UnexpectedRoot),
                    RootState::After => return Err(ParseError::TrailingContent),
                    RootState::Inside => {
                        if open.len() >= MAX_DEPTH {
                            return Err(ParseError::TooDeep);
                        }
                        let name = element_name(xml, reader.buffer_position(), 2, &start);
                        let parent = open.last().map_or(0, |&(_, parent)| parent);
                        fields.push(Field {
                            path: path(&open, name),
                            value: Cow::Borrowed(""),
                            parent,
                        });
                        text = None;
                    }
                }
            }
            Event::Text(piece) => {
                let piece = piece.into_inner();
                match root {
                    RootState::Inside if !open.is_empty() => append(&mut text, piece),
                    _ if piece.trim().is_empty() => {}
                    RootState::Before => return Err(ParseError::UnexpectedRoot),
                    RootState::After => return Err(ParseError::TrailingContent),
                    // Text directly inside <xml> between fields.
                    RootState::Inside => {}
                }
            }
            Event::CData(piece) => match root {
                RootState::Inside if !open.is_empty() => append(&mut text, piece.into_inner()),
                RootState::Inside => {}
                RootState::Before => return Err(ParseError::UnexpectedRoot),
                RootState::After => return Err(ParseError::TrailingContent),
            },
            Event::GeneralRef(reference) => {
                let resolved = resolve(&reference)?;
                match root {
                    RootState::Inside if !open.is_empty() => {
                        let mut buffer = [0u8; 4];
                        append(
                            &mut text,
                            Cow::Owned(resolved.encode_utf8(&mut buffer).to_owned()),
                        );
                    }
                    RootState::Inside => {}
                    RootState::Before => return Err(ParseError::UnexpectedRoot),
                    RootState::After => return Err(ParseError::TrailingContent),
                }
            }
            Event::DocType(_) => return Err(ParseError::DocType),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => {
                return match root {
                    RootState::After => Ok(fields),
                    RootState::Before => Err(ParseError::UnexpectedRoot),
                    RootState::Inside => {
                        Err(ParseError::Syntax("unexpected end of document".to_owned()))
                    }
                };
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RootState {
    Before,
    Inside,
    After,
}

/// The element's name, borrowed from the input where it can be found there (always, for a
/// reader over a `&str`), else copied.
fn element_name<'a>(
    xml: &'a str,
    position: u64,
    tag_end_len: usize,
    start: &quick_xml::events::BytesStart<'_>,
) -> Cow<'a, str> {
    let name = start.name().into_inner();
    // `position` is just past the tag: `<` name rest `>` (or `/>`).
    let tag_len = 1 + start.len() + tag_end_len;
    let borrowed = usize::try_from(position)
        .ok()
        .and_then(|end| end.checked_sub(tag_len))
        .and_then(|tag_start| xml.get(tag_start + 1..tag_start + 1 + name.len()))
        .filter(|candidate| *candidate == name);
    match borrowed {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(name.to_owned()),
    }
}

fn path<'a>(open: &[(Cow<'a, str>, u32)], name: Cow<'a, str>) -> Cow<'a, str> {
    if open.is_empty() {
        return name;
    }
    let mut path = String::with_capacity(32);
    for (ancestor, _) in open {
        path.push_str(ancestor);
        path.push('/');
    }
    path.push_str(&name);
    Cow::Owned(path)
}

fn append<'a>(text: &mut Option<Cow<'a, str>>, piece: Cow<'a, str>) {
    match text {
        None => *text = Some(piece),
        Some(existing) => existing.to_mut().push_str(&piece),
    }
}

fn resolve(reference: &BytesRef<'_>) -> Result<char, ParseError> {
    if let Some(resolved) = reference
        .resolve_char_ref()
        .map_err(|_| ParseError::UnknownEntity)?
    {
        return Ok(resolved);
    }
    match reference.as_ref() {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        _ => Err(ParseError::UnknownEntity),
    }
}
