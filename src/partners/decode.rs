//! From the bytes a partner sent to the document its handler parses: the one decoding step
//! in front of every handler, built-in and scripted, on first delivery and on replay alike.
//!
//! Real deliveries are not always plain UTF-8 (see `docs/RELIABILITY.md`, "What partners
//! really send"): a .NET or PowerShell sender puts a byte-order mark in front, an Apache
//! HttpClient sender declares `charset=ISO-8859-1`, an XML body declares its own
//! `encoding`, a proxy or SDK gzips the body. Each used to reach the handlers as bytes they
//! could not read, answered 200 and lost to the diary. Here, in order:
//!
//! 1. `Content-Encoding` (`gzip`, `x-gzip`, `deflate`, several in the order applied; or a
//!    gzip stream sent without the header) is undone with flate2, never past the body limit:
//!    more is [`Undecodable::TooLarge`], a bomb included. `br` and the rest are
//!    [`Undecodable::UnsupportedEncoding`].
//! 2. The charset is found: a byte-order mark first, then `Content-Type`'s `charset`, then an
//!    XML declaration's `encoding`; an unknown label is [`Undecodable::UnsupportedCharset`].
//!    Without any, valid UTF-8 is taken as it is, and invalid UTF-8 is read in the partner's
//!    documented fallback charset, if it has one, else left for the handler to refuse.
//! 3. The body is transcoded to UTF-8 with encoding_rs (WHATWG labels: `iso-8859-1` reads
//!    as windows-1252, as browsers and most senders mean it); leading byte-order marks are
//!    dropped; an XML declaration is made to say UTF-8; a form's percent-escaped bytes are
//!    read in the declared charset.
//!
//! Signatures are checked before this, on the bytes as received; the stored event keeps those
//! bytes and the headers this step reads (`Content-Type`, `Content-Encoding`), so a replay
//! decodes the same way.

use std::borrow::Cow;
use std::io::Read;

use encoding_rs::{Encoding, UTF_8};
use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};

/// How a partner's bodies are decoded.
#[derive(Debug, Clone, Copy)]
pub struct BodyPolicy {
    /// No body decodes to more than this many bytes (`max_body_bytes`).
    pub max_bytes: usize,
    /// The charset of a body that declares none and is not valid UTF-8, where the partner's
    /// documentation says what it sends; `None`: such a body is left for the handler to
    /// refuse as malformed.
    pub undeclared: Option<&'static Encoding>,
}

/// Why a body could not be turned into a document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Undecodable {
    /// Over the body limit once decompressed: refused whole, like an oversized body.
    #[error("the body decompresses to more than {limit} bytes")]
    TooLarge { limit: usize },
    /// A `Content-Encoding` we cannot undo.
    #[error("content encoding {0:?} is not supported (gzip, x-gzip, deflate, identity are)")]
    UnsupportedEncoding(String),
    /// A charset label no encoding answers to.
    #[error("charset {0:?} is not a known character encoding")]
    UnsupportedCharset(String),
    /// The body says it is compressed, or in a charset, and is not: a broken delivery.
    #[error("{0}")]
    Corrupt(String),
}

/// The document in `body`, as UTF-8 (borrowed when it already was).
///
/// # Errors
/// [`Undecodable`] when the body is compressed past the limit, in an encoding or charset we
/// cannot read, or broken.
pub fn decode<'a>(
    body: &'a [u8],
    headers: &HeaderMap,
    policy: BodyPolicy,
) -> Result<Cow<'a, [u8]>, Undecodable> {
    let inflated = inflate(body, headers, policy.max_bytes)?;
    let content_type = header_text(headers, &CONTENT_TYPE);
    let declared = content_type.as_deref().and_then(charset_param);
    let (encoding, bom) = match Encoding::for_bom(&inflated) {
        Some((encoding, bom)) => (Some(encoding), bom),
        None => {
            let label = declared.or_else(|| xml_declared_encoding(&inflated));
            let encoding = label
                .map(|label| {
                    Encoding::for_label(label.as_bytes())
                        .ok_or_else(|| Undecodable::UnsupportedCharset(label.to_owned()))
                })
                .transpose()?;
            (encoding, 0)
        }
    };
    let is_form = content_type.as_deref().is_some_and(|t| {
        t.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    let encoding = match encoding {
        Some(encoding) => encoding,
        None if std::str::from_utf8(&inflated).is_ok() => UTF_8,
        None => match policy.undeclared {
            Some(fallback) => fallback,
            // Left for the handler to refuse: we cannot tell what it is.
            None => return Ok(inflated),
        },
    };
    let text = transcode(&inflated[bom..], encoding)?;
    let text = strip_marks(text);
    let text = if is_form && encoding != UTF_8 {
        Cow::Owned(reencode_form(&text, encoding))
    } else {
        text
    };
    let text = declare_utf8(text);
    let changed = match &text {
        Cow::Borrowed(text) => text.len() != inflated.len(),
        Cow::Owned(_) => true,
    };
    if !changed {
        drop(text);
        // Nothing changed: hand back the very bytes.
        return Ok(inflated);
    }
    Ok(Cow::Owned(text.into_owned().into_bytes()))
}

/// A header's value as text (the first, if repeated), when it is text.
fn header_text(headers: &HeaderMap, name: &http::HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// The `gzip` magic number: a body that starts with it is a gzip stream, whatever the
/// headers say.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Undoes the `Content-Encoding`s, last applied first, at most `limit` bytes out.
fn inflate<'a>(
    body: &'a [u8],
    headers: &HeaderMap,
    limit: usize,
) -> Result<Cow<'a, [u8]>, Undecodable> {
    let declared = header_text(headers, &CONTENT_ENCODING).unwrap_or_default();
    let mut codings: Vec<String> = declared
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    if codings.is_empty() && body.starts_with(&GZIP_MAGIC) {
        codings.push("gzip".to_owned());
    }
    let mut current: Cow<'a, [u8]> = Cow::Borrowed(body);
    for coding in codings.iter().rev() {
        current = Cow::Owned(match coding.as_str() {
            "gzip" | "x-gzip" => {
                read_limited(flate2::read::MultiGzDecoder::new(&current[..]), limit)?
            }
            // HTTP's `deflate` is a zlib stream; some senders send a raw deflate one.
            "deflate" => read_limited(flate2::read::ZlibDecoder::new(&current[..]), limit)
                .or_else(|error| match error {
                    Undecodable::Corrupt(_) => {
                        read_limited(flate2::read::DeflateDecoder::new(&current[..]), limit)
                    }
                    other => Err(other),
                })?,
            other => return Err(Undecodable::UnsupportedEncoding(other.to_owned())),
        });
    }
    Ok(current)
}

/// Everything `reader` yields, refused once it passes `limit`.
fn read_limited(reader: impl Read, limit: usize) -> Result<Vec<u8>, Undecodable> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(cap).read_to_end(&mut out).map_err(|e| {
        Undecodable::Corrupt(format!("the compressed body does not decompress: {e}"))
    })?;
    if out.len() > limit {
        return Err(Undecodable::TooLarge { limit });
    }
    Ok(out)
}

/// `charset` of a `Content-Type` value, unquoted.
fn charset_param(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"').trim())
            .filter(|v| !v.is_empty())
    })
}

/// `encoding` of an XML declaration at the start of the body (after whitespace).
fn xml_declared_encoding(body: &[u8]) -> Option<&str> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = body.get(start..)?;
    if !rest.starts_with(b"<?xml") {
        return None;
    }
    let end = rest.windows(2).position(|w| w == b"?>")?;
    let declaration = std::str::from_utf8(rest.get(..end)?).ok()?;
    let after = &declaration[declaration.find("encoding")? + "encoding".len()..];
    let after = after.trim_start().strip_prefix('=')?.trim_start();
    let quote = after.chars().next().filter(|q| *q == '"' || *q == '\'')?;
    let value = &after[1..];
    value.find(quote).map(|end| &value[..end])
}

/// `bytes` read in `encoding`, as UTF-8 text.
fn transcode<'b>(
    bytes: &'b [u8],
    encoding: &'static Encoding,
) -> Result<Cow<'b, str>, Undecodable> {
    encoding
        .decode_without_bom_handling_and_without_replacement(bytes)
        .ok_or_else(|| Undecodable::Corrupt(format!("the body is not valid {}", encoding.name())))
}

/// Drops a run of leading U+FEFF (byte-order marks, sometimes doubled by a pipeline).
fn strip_marks(text: Cow<'_, str>) -> Cow<'_, str> {
    if !text.starts_with('\u{feff}') {
        return text;
    }
    match text {
        Cow::Borrowed(t) => Cow::Borrowed(t.trim_start_matches('\u{feff}')),
        Cow::Owned(t) => Cow::Owned(t.trim_start_matches('\u{feff}').to_owned()),
    }
}

/// An XML declaration naming another encoding, rewritten to say UTF-8: the document is
/// UTF-8 now, and an XML reader must not read it as the old one.
fn declare_utf8(text: Cow<'_, str>) -> Cow<'_, str> {
    let Some(encoding) = xml_declared_encoding(text.as_bytes()) else {
        return text;
    };
    if encoding.eq_ignore_ascii_case("utf-8") {
        return text;
    }
    let offset = text.find(encoding).unwrap_or_default();
    let mut rewritten = String::with_capacity(text.len());
    rewritten.push_str(&text[..offset]);
    rewritten.push_str("UTF-8");
    rewritten.push_str(&text[offset + encoding.len()..]);
    Cow::Owned(rewritten)
}

/// A form whose percent-escaped bytes are in `encoding`, as the same form in UTF-8.
fn reencode_form(form: &str, encoding: &'static Encoding) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for pair in form.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        out.append_pair(
            &decode_escaped(key, encoding),
            &decode_escaped(value, encoding),
        );
    }
    out.finish()
}

/// One form component: `+` as space, `%XX` as a byte, the bytes read in `encoding`.
fn decode_escaped(component: &str, encoding: &'static Encoding) -> String {
    let plus_as_space = component.replace('+', " ");
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(&plus_as_space).collect();
    encoding.decode_without_bom_handling(&bytes).0.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const POLICY: BodyPolicy = BodyPolicy {
        max_bytes: 1 << 20,
        undeclared: None,
    };

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().expect("header value"));
        }
        map
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).expect("gzip");
        encoder.finish().expect("gzip")
    }

    fn text(decoded: Result<Cow<'_, [u8]>, Undecodable>) -> String {
        String::from_utf8(decoded.expect("decodes").into_owned()).expect("UTF-8")
    }

    #[test]
    fn plain_utf8_is_handed_back_untouched() {
        let body = br#"{"a":"caf\xc3\xa9"}"#;
        let decoded = decode(body, &HeaderMap::new(), POLICY).expect("decodes");
        assert!(matches!(decoded, Cow::Borrowed(_)));
        assert_eq!(&decoded[..], body);
    }

    #[test]
    fn byte_order_marks_are_dropped_whatever_the_format() {
        for body in [
            &b"\xef\xbb\xbf{\"a\":1}"[..],
            b"\xef\xbb\xbf\xef\xbb\xbf{\"a\":1}",
        ] {
            assert_eq!(text(decode(body, &HeaderMap::new(), POLICY)), "{\"a\":1}");
        }
        let form = b"\xef\xbb\xbfhost=h.example&booking%5Bcode%5D=X";
        assert!(text(decode(form, &HeaderMap::new(), POLICY)).starts_with("host="));
        let xml = b"\xef\xbb\xbf<?xml version=\"1.0\"?><a/>";
        assert!(text(decode(xml, &HeaderMap::new(), POLICY)).starts_with("<?xml"));
    }

    #[test]
    fn declared_charsets_are_transcoded_to_utf8() {
        let latin1 = b"{\"name\":\"Caf\xe9 M\xfcller\"}";
        let h = headers(&[("content-type", "application/json; charset=ISO-8859-1")]);
        assert_eq!(
            text(decode(latin1, &h, POLICY)),
            "{\"name\":\"Café Müller\"}"
        );
        let h = headers(&[("content-type", "application/json;charset=\"windows-1252\"")]);
        assert_eq!(
            text(decode(b"{\"p\":\"\x80 5\"}", &h, POLICY)),
            "{\"p\":\"€ 5\"}"
        );
        let mut utf16 = vec![0xff, 0xfe];
        utf16.extend("{\"a\":\"é\"}".encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(
            text(decode(&utf16, &HeaderMap::new(), POLICY)),
            "{\"a\":\"é\"}"
        );
        let no_bom: Vec<u8> = "{\"a\":1}"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let h = headers(&[("content-type", "application/json; charset=utf-16le")]);
        assert_eq!(text(decode(&no_bom, &h, POLICY)), "{\"a\":1}");
    }

    #[test]
    fn an_xml_declaration_is_a_declaration_and_then_says_utf8() {
        let xml = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><b><n>Ren\xe9e</n></b>";
        assert_eq!(
            text(decode(xml, &HeaderMap::new(), POLICY)),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><b><n>Renée</n></b>"
        );
    }

    #[test]
    fn a_latin1_form_is_read_in_its_charset() {
        let h = headers(&[(
            "content-type",
            "application/x-www-form-urlencoded; charset=ISO-8859-1",
        )]);
        let decoded = text(decode(b"name=Ren%E9e+M&x=1", &h, POLICY));
        assert_eq!(decoded, "name=Ren%C3%A9e+M&x=1");
    }

    #[test]
    fn unknown_charsets_and_encodings_are_named() {
        let h = headers(&[("content-type", "application/json; charset=klingon-8")]);
        assert_eq!(
            decode(b"{}", &h, POLICY),
            Err(Undecodable::UnsupportedCharset("klingon-8".into()))
        );
        let h = headers(&[("content-encoding", "br")]);
        assert_eq!(
            decode(b"{}", &h, POLICY),
            Err(Undecodable::UnsupportedEncoding("br".into()))
        );
    }

    #[test]
    fn gzip_and_deflate_bodies_are_inflated_within_the_limit() {
        let body = br#"{"notificationType":"OPEN"}"#;
        let h = headers(&[("content-encoding", "gzip")]);
        assert_eq!(
            text(decode(&gzip(body), &h, POLICY)),
            std::str::from_utf8(body).unwrap_or_default()
        );
        // Sent without the header, a gzip stream is still one.
        assert!(text(decode(&gzip(body), &HeaderMap::new(), POLICY)).contains("OPEN"));
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zlib.write_all(body).expect("zlib");
        let h = headers(&[("content-encoding", "deflate")]);
        assert!(text(decode(&zlib.finish().expect("zlib"), &h, POLICY)).contains("OPEN"));
        let mut raw =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(body).expect("deflate");
        assert!(text(decode(&raw.finish().expect("deflate"), &h, POLICY)).contains("OPEN"));
        let twice = gzip(&gzip(body));
        let h = headers(&[("content-encoding", "gzip, gzip")]);
        assert!(text(decode(&twice, &h, POLICY)).contains("OPEN"));
    }

    #[test]
    fn a_zip_bomb_is_refused_at_the_limit() {
        let bomb = gzip(&vec![b'0'; 10 << 20]);
        assert!(bomb.len() < 20_000, "a real bomb: {} bytes", bomb.len());
        let h = headers(&[("content-encoding", "gzip")]);
        assert_eq!(
            decode(&bomb, &h, POLICY),
            Err(Undecodable::TooLarge { limit: 1 << 20 })
        );
        let h = headers(&[("content-encoding", "gzip")]);
        assert!(matches!(
            decode(b"not gzip at all", &h, POLICY),
            Err(Undecodable::Corrupt(_))
        ));
    }

    #[test]
    fn undeclared_invalid_utf8_is_read_in_the_partners_fallback_only() {
        let body = b"{\"n\":\"Caf\xe9\"}";
        assert_eq!(
            decode(body, &HeaderMap::new(), POLICY).map(Cow::into_owned),
            Ok(body.to_vec()),
            "without a documented fallback it reaches the handler as it came"
        );
        let policy = BodyPolicy {
            undeclared: Some(encoding_rs::WINDOWS_1252),
            ..POLICY
        };
        assert_eq!(
            text(decode(body, &HeaderMap::new(), policy)),
            "{\"n\":\"Café\"}"
        );
    }
}
