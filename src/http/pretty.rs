//! Payloads laid out for reading on the event page: JSON and XML re-indented, every
//! character of the payload kept (numbers keep their digits, entities stay unexpanded),
//! anything else as received. The page escapes the result: it is data, never markup.

/// `body` re-indented when it is JSON or XML, else as it is.
pub fn pretty(body: &str) -> String {
    let trimmed = body.trim_start();
    let laid_out = if trimmed.starts_with(['{', '[']) {
        json(body)
    } else if trimmed.starts_with('<') {
        xml(body)
    } else {
        None
    };
    laid_out.unwrap_or_else(|| body.to_owned())
}

/// Re-indents JSON token by token (never through numbers as floats); `None` if it is not
/// JSON.
fn json(body: &str) -> Option<String> {
    serde_json::from_str::<serde::de::IgnoredAny>(body).ok()?;
    let mut out = String::with_capacity(body.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = body.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if chars.peek().is_some_and(|next| matches!(next, '}' | ']')) {
                    if let Some(close) = chars.next() {
                        out.push(close);
                    }
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    Some(out)
}

/// Re-indents XML event by event; `None` if it does not read as XML.
fn xml(body: &str) -> Option<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(body);
    reader.config_mut().trim_text(true);
    let mut writer = quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2);
    loop {
        match reader.read_event().ok()? {
            Event::Eof => break,
            event => writer.write_event(event).ok()?,
        }
    }
    String::from_utf8(writer.into_inner()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_indented_and_keeps_every_digit() {
        let body = r#"{"total":50.710,"ids":[1340570962231298,2],"empty":{},"s":"a,b:{c}"}"#;
        assert_eq!(
            pretty(body),
            "{\n  \"total\": 50.710,\n  \"ids\": [\n    1340570962231298,\n    2\n  ],\n  \"empty\": {},\n  \"s\": \"a,b:{c}\"\n}"
        );
    }

    #[test]
    fn xml_is_indented_without_expanding_entities() {
        let body = "<booking><code>A&amp;B</code><note>x</note></booking>";
        assert_eq!(
            pretty(body),
            "<booking>\n  <code>A&amp;B</code>\n  <note>x</note>\n</booking>"
        );
    }

    proptest::proptest! {
        #[test]
        fn pretty_json_reads_back_as_the_same_document(
            keys in proptest::collection::vec("[a-z\"\\\\:,{}\\[\\] ]{0,8}", 1..6),
            numbers in proptest::collection::vec(proptest::prelude::any::<i64>(), 1..6),
        ) {
            let document: serde_json::Value = keys
                .iter()
                .zip(numbers.iter().cycle())
                .map(|(k, n)| (k.clone(), serde_json::json!([n, k, { "n": n }])))
                .collect::<serde_json::Map<_, _>>()
                .into();
            let laid_out = pretty(&document.to_string());
            let read_back: serde_json::Value =
                serde_json::from_str(&laid_out).expect("still JSON");
            proptest::prop_assert_eq!(read_back, document);
        }
    }

    #[test]
    fn anything_else_is_left_as_received() {
        assert_eq!(pretty("a=1&b=2"), "a=1&b=2");
        assert_eq!(pretty("{not json"), "{not json");
        assert_eq!(pretty("<unclosed"), "<unclosed");
    }
}
