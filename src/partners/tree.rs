//! Any partner body as one tree: JSON, XML and form bodies normalised for script handlers.
//!
//! - JSON keeps its shape. Numbers keep their own digits: integers become `i64`, others
//!   `Decimal` (never `f64`); integers too large for either stay strings.
//! - XML follows the common XML-to-JSON convention partners already use (Checkfront):
//!   attributes under `"@attributes"`, repeated children as arrays, text-only elements as
//!   strings, empty elements as empty maps. Entities are not expanded beyond XML's own five
//!   and character references, and DTDs are ignored, so entity bombs and external entities
//!   cannot do anything.
//! - `application/x-www-form-urlencoded` bodies become a map; repeated keys become arrays.
//!
//! The format is sniffed from the body, not the `Content-Type`, which partners get wrong.

use std::collections::BTreeMap;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use rhai::{Array, Dynamic, Map};
use rust_decimal::Decimal;
use serde_json::value::RawValue;

/// Deeper bodies are refused: no partner nests this deep, and recursion must stay bounded.
pub const MAX_DEPTH: usize = 64;

/// The format a body was recognised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Empty,
    Json,
    Xml,
    Form,
    /// Not JSON, XML or a form; given to the script as a string.
    Text,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Json => "json",
            Self::Xml => "xml",
            Self::Form => "form",
            Self::Text => "text",
        }
    }
}

/// Why a body could not be read as the format it looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{format} body: {message}")]
pub struct TreeError {
    pub format: &'static str,
    pub message: String,
}

fn error(format: Format, message: impl Into<String>) -> TreeError {
    TreeError {
        format: format.as_str(),
        message: message.into(),
    }
}

/// Reads a body into a tree, sniffing its format.
///
/// # Errors
/// When the body looks like JSON or XML but is not well-formed, is nested deeper than
/// [`MAX_DEPTH`], or is not UTF-8.
pub fn parse(body: &[u8]) -> Result<(Format, Dynamic), TreeError> {
    let trimmed = body.trim_ascii();
    let Some(first) = trimmed.first() else {
        return Ok((Format::Empty, Dynamic::UNIT));
    };
    let text = std::str::from_utf8(trimmed).map_err(|_| error(Format::Text, "not valid UTF-8"))?;
    match first {
        b'{' | b'[' => json(text, 0).map(|tree| (Format::Json, tree)),
        b'<' => xml(text).map(|tree| (Format::Xml, tree)),
        _ if looks_like_form(text) => Ok((Format::Form, form(text))),
        _ => Ok((Format::Text, Dynamic::from(text.to_owned()))),
    }
}

fn json(text: &str, depth: usize) -> Result<Dynamic, TreeError> {
    if depth > MAX_DEPTH {
        return Err(error(
            Format::Json,
            format!("nested deeper than {MAX_DEPTH}"),
        ));
    }
    let fail = |e: serde_json::Error| error(Format::Json, e.to_string());
    match text.as_bytes().first() {
        Some(b'{') => {
            let fields: BTreeMap<String, &RawValue> = serde_json::from_str(text).map_err(fail)?;
            let mut map = Map::new();
            for (key, value) in fields {
                map.insert(key.into(), json(value.get(), depth + 1)?);
            }
            Ok(Dynamic::from_map(map))
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(fail)?;
            items
                .into_iter()
                .map(|item| json(item.get(), depth + 1))
                .collect::<Result<Array, _>>()
                .map(Dynamic::from_array)
        }
        Some(b'"') => serde_json::from_str::<String>(text)
            .map(Dynamic::from)
            .map_err(fail),
        Some(b't' | b'f') => serde_json::from_str::<bool>(text)
            .map(Dynamic::from)
            .map_err(fail),
        Some(b'n') => Ok(Dynamic::UNIT),
        _ => Ok(number(text)),
    }
}

/// A JSON number from its own digits.
fn number(text: &str) -> Dynamic {
    if let Ok(int) = text.parse::<i64>() {
        return Dynamic::from_int(int);
    }
    match super::wire::parse_decimal(text) {
        Some(decimal) => Dynamic::from_decimal(decimal),
        None => Dynamic::from(text.to_owned()),
    }
}

/// An XML element being built.
struct Element {
    name: String,
    attributes: Map,
    children: Vec<(String, Dynamic)>,
    text: String,
}

impl Element {
    fn start(start: &BytesStart<'_>) -> Result<Element, TreeError> {
        let mut attributes = Map::new();
        for attribute in start.attributes() {
            let attribute = attribute.map_err(|e| error(Format::Xml, e.to_string()))?;
            let key = String::from_utf8_lossy(attribute.key.as_ref()).into_owned();
            let value = attribute
                .unescape_value()
                .map_err(|e| error(Format::Xml, e.to_string()))?;
            attributes.insert(key.into(), Dynamic::from(value.into_owned()));
        }
        Ok(Element {
            name: String::from_utf8_lossy(start.name().as_ref()).into_owned(),
            attributes,
            children: Vec::new(),
            text: String::new(),
        })
    }

    /// The element's value: a string for text-only elements, else a map.
    fn finish(self) -> Dynamic {
        let text = self.text.trim();
        if self.children.is_empty() && self.attributes.is_empty() {
            return if text.is_empty() {
                Dynamic::from_map(Map::new())
            } else {
                Dynamic::from(text.to_owned())
            };
        }
        let mut map = Map::new();
        if !self.attributes.is_empty() {
            map.insert("@attributes".into(), Dynamic::from_map(self.attributes));
        }
        for (name, value) in self.children {
            insert_repeated(&mut map, &name, value);
        }
        if !text.is_empty() {
            map.insert("#text".into(), Dynamic::from(text.to_owned()));
        }
        Dynamic::from_map(map)
    }
}

/// An XML document as `{ root_name: tree }`.
fn xml(text: &str) -> Result<Dynamic, TreeError> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<(String, Dynamic)> = None;
    loop {
        let event = reader.read_event().map_err(|e| {
            error(
                Format::Xml,
                format!("at byte {}: {e}", reader.buffer_position()),
            )
        })?;
        match event {
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(error(
                        Format::Xml,
                        format!("nested deeper than {MAX_DEPTH}"),
                    ));
                }
                stack.push(Element::start(&start)?);
            }
            Event::Empty(start) => {
                let element = Element::start(&start)?;
                let name = element.name.clone();
                attach(&mut stack, &mut root, name, element.finish())?;
            }
            Event::End(_) => {
                let element = stack
                    .pop()
                    .ok_or_else(|| error(Format::Xml, "unbalanced end tag"))?;
                let name = element.name.clone();
                attach(&mut stack, &mut root, name, element.finish())?;
            }
            Event::Text(text) => {
                let text = text
                    .decode()
                    .map_err(|e| error(Format::Xml, e.to_string()))?;
                let text = quick_xml::escape::unescape(&text)
                    .map_err(|e| error(Format::Xml, e.to_string()))?;
                if let Some(element) = stack.last_mut() {
                    element.text.push_str(&text);
                }
            }
            Event::CData(data) => {
                if let Some(element) = stack.last_mut() {
                    element.text.push_str(&String::from_utf8_lossy(&data));
                }
            }
            Event::GeneralRef(reference) => {
                let name = String::from_utf8_lossy(&reference);
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => quick_xml::escape::unescape(&format!("&{name};"))
                        .map(|s| s.into_owned())
                        .map_err(|_| {
                            error(Format::Xml, format!("entity &{name}; is not expanded"))
                        })?,
                };
                if let Some(element) = stack.last_mut() {
                    element.text.push_str(&resolved);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(error(Format::Xml, "document ends inside an element"));
    }
    let (name, tree) = root.ok_or_else(|| error(Format::Xml, "no root element"))?;
    let mut document = Map::new();
    document.insert(name.into(), tree);
    Ok(Dynamic::from_map(document))
}

fn attach(
    stack: &mut [Element],
    root: &mut Option<(String, Dynamic)>,
    name: String,
    value: Dynamic,
) -> Result<(), TreeError> {
    match stack.last_mut() {
        Some(parent) => parent.children.push((name, value)),
        None if root.is_none() => *root = Some((name, value)),
        None => return Err(error(Format::Xml, "more than one root element")),
    }
    Ok(())
}

/// `key=value&...` on one line, its first key a name: a form, even with the raw spaces
/// `curl -d` and hand-built encoders leave in values.
fn looks_like_form(text: &str) -> bool {
    let first = text.split('&').next().unwrap_or_default();
    first
        .split_once('=')
        .is_some_and(|(key, _)| !key.is_empty() && !key.contains(char::is_whitespace))
        && !text.trim_end().contains(['\n', '\r'])
}

/// A form body; PHP-style bracket keys nest: `booking[order][total]=48.30` becomes
/// `{booking: {order: {total: "48.30"}}}`, and `items[0][sku]` a map keyed `"0"`.
fn form(text: &str) -> Dynamic {
    let mut map = Map::new();
    for (key, value) in form_urlencoded::parse(text.as_bytes()) {
        let path = bracket_path(&key);
        insert_at(&mut map, &path, Dynamic::from(value.into_owned()), 0);
    }
    Dynamic::from_map(map)
}

/// `a[b][c]` as `["a", "b", "c"]`; a key without brackets as itself.
fn bracket_path(key: &str) -> Vec<&str> {
    let Some((head, rest)) = key.split_once('[') else {
        return vec![key];
    };
    let mut path = vec![head];
    path.extend(rest.trim_end_matches(']').split("]["));
    path
}

fn insert_at(map: &mut Map, path: &[&str], value: Dynamic, depth: usize) {
    match path {
        [] => {}
        [last] => insert_repeated(map, last, value),
        [first, rest @ ..] if depth < MAX_DEPTH => {
            let child = map
                .entry((*first).into())
                .or_insert_with(|| Dynamic::from_map(Map::new()));
            if !child.is_map() {
                *child = Dynamic::from_map(Map::new());
            }
            if let Some(mut inner) = child.write_lock::<Map>() {
                insert_at(&mut inner, rest, value, depth + 1);
            }
        }
        _ => {}
    }
}

/// Inserts `value` under `key`; a repeated key turns into an array of its values.
fn insert_repeated(map: &mut Map, key: &str, value: Dynamic) {
    match map.get_mut(key) {
        Some(existing) if existing.is_array() => {
            if let Some(mut array) = existing.write_lock::<Array>() {
                array.push(value);
            }
        }
        Some(existing) => {
            let first = std::mem::take(existing);
            *existing = Dynamic::from_array(vec![first, value]);
        }
        None => {
            map.insert(key.into(), value);
        }
    }
}

/// The value at `path` below `node`, if every step is a map holding the next key.
pub fn at(node: &Dynamic, path: &[&str]) -> Option<Dynamic> {
    let mut current = node.clone();
    for key in path {
        let next = current.read_lock::<Map>()?.get(*key).cloned()?;
        current = next;
    }
    Some(current)
}

/// A scalar as text (strings as they are, numbers in their own digits); `None` for `()`,
/// empty strings and the empty maps XML-to-JSON conversions put for empty elements.
pub fn text_of(value: &Dynamic) -> Option<String> {
    if value.is_unit() || value.is_map() || value.is_array() {
        return None;
    }
    let text = if value.is_string() {
        value.clone().into_string().ok()?
    } else {
        value.to_string()
    };
    let text = text.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// The text at `path`; see [`text_of`].
pub fn text_at(node: &Dynamic, path: &[&str]) -> Option<String> {
    at(node, path).as_ref().and_then(text_of)
}

/// One or many: an array as its items, a map keyed `"0"`, `"1"`, ... (PHP-style forms) as
/// its values in order, anything else but `()` as a single item.
pub fn items(value: Option<Dynamic>) -> Vec<Dynamic> {
    let Some(value) = value.filter(|v| !v.is_unit()) else {
        return Vec::new();
    };
    if value.is_array() {
        return value.into_array().unwrap_or_default();
    }
    if let Some(map) = value.read_lock::<Map>() {
        let mut numbered: Vec<(usize, Dynamic)> = Vec::with_capacity(map.len());
        for (key, item) in map.iter() {
            match key.parse::<usize>() {
                Ok(index) => numbered.push((index, item.clone())),
                Err(_) => {
                    numbered.clear();
                    break;
                }
            }
        }
        if !numbered.is_empty() && numbered.len() == map.len() {
            numbered.sort_by_key(|(index, _)| *index);
            return numbered.into_iter().map(|(_, item)| item).collect();
        }
    }
    vec![value]
}

/// Reads a decimal out of a tree value: a `Decimal`, an integer, or a numeric string.
pub fn decimal_of(value: &Dynamic) -> Option<Decimal> {
    if let Some(decimal) = value.clone().try_cast::<Decimal>() {
        return Some(decimal);
    }
    if let Ok(int) = value.as_int() {
        return Some(Decimal::from(int));
    }
    value
        .clone()
        .into_string()
        .ok()
        .and_then(|s| super::wire::parse_decimal(s.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(tree: &Dynamic, keys: &[&str]) -> Dynamic {
        let mut node = tree.clone();
        for key in keys {
            node = node
                .clone()
                .try_cast::<Map>()
                .and_then(|m| m.get(*key).cloned())
                .unwrap_or_else(|| panic!("no {key} in {node:?}"));
        }
        node
    }

    #[test]
    fn json_numbers_keep_their_digits() {
        let (format, tree) = parse(
            br#"{"a": 11.42, "b": 9765040300495493, "c": "x", "d": [1, null, true], "e": 1e400}"#,
        )
        .expect("parses");
        assert_eq!(format, Format::Json);
        assert_eq!(
            decimal_of(&path(&tree, &["a"]))
                .map(|d| d.to_string())
                .as_deref(),
            Some("11.42")
        );
        assert_eq!(path(&tree, &["b"]).as_int(), Ok(9765040300495493));
        assert_eq!(
            path(&tree, &["e"]).into_string().as_deref(),
            Ok("1e400"),
            "unrepresentable numbers stay text"
        );
    }

    #[test]
    fn xml_follows_the_attributes_and_repeated_children_convention() {
        let xml = br#"<?xml version="1.0"?><notify host="h.example"><item id="1"><sku>a</sku></item><item id="2"><sku>b &amp; c</sku></item><empty/><n>5</n></notify>"#;
        let (format, tree) = parse(xml).expect("parses");
        assert_eq!(format, Format::Xml);
        assert_eq!(
            path(&tree, &["notify", "@attributes", "host"])
                .into_string()
                .as_deref(),
            Ok("h.example")
        );
        let items = path(&tree, &["notify", "item"])
            .into_array()
            .expect("array");
        assert_eq!(items.len(), 2);
        assert_eq!(
            path(&items[1], &["sku"]).into_string().as_deref(),
            Ok("b & c")
        );
        assert!(path(&tree, &["notify", "empty"]).is_map());
        assert_eq!(
            path(&tree, &["notify", "n"]).into_string().as_deref(),
            Ok("5")
        );
    }

    #[test]
    fn entity_bombs_and_external_entities_are_refused() {
        let bomb = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><lolz>&lol2;</lolz>"#;
        assert!(parse(bomb).is_err());
        let external = br#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><x>&xxe;</x>"#;
        assert!(parse(external).is_err());
    }

    #[test]
    fn hostile_nesting_is_refused_not_overflowed() {
        let deep_json = "[".repeat(10_000) + "]".repeat(10_000).as_str();
        assert!(parse(deep_json.as_bytes()).is_err());
        let deep_xml = "<a>".repeat(10_000) + "</a>".repeat(10_000).as_str();
        assert!(parse(deep_xml.as_bytes()).is_err());
    }

    #[test]
    fn forms_and_text_and_broken_bodies() {
        let (format, tree) =
            parse(b"booking%5Bcode%5D=KMVQ&booking%5Border%5D%5Btotal%5D=48.30&x=1&x=2")
                .expect("parses");
        assert_eq!(format, Format::Form);
        assert_eq!(
            path(&tree, &["booking", "code"]).into_string().as_deref(),
            Ok("KMVQ")
        );
        assert_eq!(
            path(&tree, &["booking", "order", "total"])
                .into_string()
                .as_deref(),
            Ok("48.30")
        );
        assert_eq!(path(&tree, &["x"]).into_array().map(|a| a.len()), Ok(2));
        assert_eq!(parse(b"hello world").expect("text").0, Format::Text);
        assert_eq!(parse(b"a = b").expect("text").0, Format::Text);
        let (format, tree) = parse(b"host=h&booking[customer][name]=John Smith").expect("form");
        assert_eq!(
            format,
            Format::Form,
            "raw spaces in values are still a form"
        );
        assert_eq!(
            text_at(&tree, &["booking", "customer", "name"]).as_deref(),
            Some("John Smith")
        );
        assert_eq!(parse(b"  ").expect("empty").0, Format::Empty);
        assert!(parse(b"{\"a\": ").is_err());
        assert!(parse(b"<a><b></a>").is_err());
        assert!(parse(b"\xff{").is_err());
    }
}
