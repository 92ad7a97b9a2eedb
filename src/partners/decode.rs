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

use encoding_rs::{Encoding, REPLACEMENT, UTF_8, UTF_16BE, UTF_16LE, X_USER_DEFINED};
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
    let declared = content_type
        .as_deref()
        .map(charset_params)
        .unwrap_or_default();
    let is_form = content_type.as_deref().is_some_and(|t| {
        t.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    let (encoding, bom) = match charset(&inflated, &declared)? {
        Some(found) => found,
        None if std::str::from_utf8(&inflated).is_ok() => (UTF_8, 0),
        None => match policy.undeclared {
            Some(fallback) => (fallback, 0),
            // Left for the handler to refuse: we cannot tell what it is.
            None if !is_form => return Ok(inflated),
            None => return Err(not_utf8_form()),
        },
    };
    let text = transcode(&inflated[bom..], encoding)?;
    let text = strip_marks(text);
    let text = if is_form {
        form_in_utf8(text, encoding, declared.is_empty(), policy.undeclared)?
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

/// The charset of `body` and the length of its byte-order mark, from (in order) a
/// byte-order mark, the `Content-Type` declarations, the layout of a UTF-16 document
/// without a mark (RFC 4627 §3, XML 1.0 Appendix F: its first characters are ASCII, so
/// every other byte is zero), and an XML declaration; `None` when nothing says.
///
/// Declarations that disagree (`charset` twice, or a `Content-Type` against the XML
/// declaration, as PHP servers' defaults make) are settled by the bytes: UTF-8 if one of
/// them says so and the body is valid UTF-8 (a legacy charset reads anything, but text in
/// one is almost never valid multi-byte UTF-8), else the first under which the body reads.
///
/// # Errors
/// [`Undecodable::UnsupportedCharset`] for a label no encoding answers to, for UTF-32, and
/// for the WHATWG `replacement` (ISO-2022-KR, HZ) and `x-user-defined` encodings, which
/// would read the body as nothing or as private-use letters.
fn charset(
    body: &[u8],
    declared: &[&str],
) -> Result<Option<(&'static Encoding, usize)>, Undecodable> {
    if body.starts_with(&[0xff, 0xfe, 0, 0]) || body.starts_with(&[0, 0, 0xfe, 0xff]) {
        return Err(Undecodable::UnsupportedCharset("UTF-32".to_owned()));
    }
    if let Some(found) = Encoding::for_bom(body) {
        return Ok(Some(found));
    }
    let mut labels: Vec<&str> = declared.to_vec();
    let sniffed = sniff_utf16(body)?;
    if let (true, Some(encoding)) = (labels.is_empty(), sniffed) {
        return Ok(Some((encoding, 0)));
    }
    labels.extend(xml_declared_encoding(body));
    let mut candidates: Vec<&'static Encoding> = Vec::with_capacity(labels.len());
    for label in labels {
        let encoding = readable(label)?;
        // A bare `utf-16` means big-endian without a mark (RFC 2781 §4.3); the body's
        // own layout says which it is.
        let encoding = match sniffed {
            Some(order) if encoding == UTF_16LE && !label.to_ascii_lowercase().ends_with("le") => {
                order
            }
            _ => encoding,
        };
        // `us-ascii` on bytes past ASCII is a mislabel: UTF-8 if they read so.
        let encoding = if is_ascii_label(label) && !body.is_ascii() && is_utf8(body) {
            UTF_8
        } else {
            encoding
        };
        if !candidates.contains(&encoding) {
            candidates.push(encoding);
        }
    }
    let chosen = match candidates.as_slice() {
        [] => None,
        [only] => Some(*only),
        several if several.contains(&UTF_8) && is_utf8(body) => Some(UTF_8),
        several => several
            .iter()
            .copied()
            .find(|encoding| {
                encoding
                    .decode_without_bom_handling_and_without_replacement(body)
                    .is_some()
            })
            .or_else(|| several.first().copied()),
    };
    Ok(chosen.map(|encoding| (encoding, 0)))
}

/// The encoding a declared label names, if it is one a body can honestly be read in.
fn readable(label: &str) -> Result<&'static Encoding, Undecodable> {
    match Encoding::for_label(label.as_bytes()) {
        Some(encoding) if encoding != REPLACEMENT && encoding != X_USER_DEFINED => Ok(encoding),
        _ => Err(Undecodable::UnsupportedCharset(label.to_owned())),
    }
}

/// The WHATWG labels of US-ASCII (which it maps to windows-1252).
fn is_ascii_label(label: &str) -> bool {
    ["ascii", "us-ascii", "ansi_x3.4-1968"]
        .iter()
        .any(|ascii| label.trim().eq_ignore_ascii_case(ascii))
}

fn is_utf8(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok()
}

/// UTF-16 (or UTF-32) told by where the zero bytes fall among a document's first four,
/// which are ASCII (`{"`, `<?`).
///
/// # Errors
/// [`Undecodable::UnsupportedCharset`] for the layout of UTF-32.
fn sniff_utf16(body: &[u8]) -> Result<Option<&'static Encoding>, Undecodable> {
    let Some(&[a, b, c, d]) = body.get(..4) else {
        return Ok(None);
    };
    Ok(match (a == 0, b == 0, c == 0, d == 0) {
        (true, true, true, false) | (false, true, true, true) => {
            return Err(Undecodable::UnsupportedCharset("UTF-32".to_owned()));
        }
        (true, false, true, false) => Some(UTF_16BE),
        (false, true, false, true) => Some(UTF_16LE),
        _ => None,
    })
}

fn not_utf8_form() -> Undecodable {
    Undecodable::Corrupt(
        "the form's escaped bytes are not UTF-8 and it declares no charset".to_owned(),
    )
}

/// A form whose percent-escapes are bytes in `encoding`, as a form whose escapes are UTF-8.
/// Undeclared escapes that are not UTF-8 are read in the partner's documented fallback, or
/// refused: decoding them lossily would store U+FFFD in the diary.
fn form_in_utf8<'t>(
    form: Cow<'t, str>,
    encoding: &'static Encoding,
    undeclared: bool,
    fallback: Option<&'static Encoding>,
) -> Result<Cow<'t, str>, Undecodable> {
    if encoding != UTF_8 {
        return Ok(Cow::Owned(reencode_form(&form, encoding)));
    }
    let escapes_are_utf8 = form.split(['&', '=']).all(|component| {
        percent_encoding::percent_decode_str(component)
            .decode_utf8()
            .is_ok()
    });
    match (escapes_are_utf8, undeclared.then_some(fallback).flatten()) {
        (true, _) => Ok(form),
        (false, Some(fallback)) => Ok(Cow::Owned(reencode_form(&form, fallback))),
        (false, None) => Err(not_utf8_form()),
    }
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
            "gzip" | "x-gzip" => gunzip(&current, limit)?,
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

/// A gzip body's members, one after another, at most `limit` bytes out. What follows the
/// last member and is not another (zero padding from a block-aligned writer, a stray
/// CRLF) is ignored, as `gzip -d` does: each member's own CRC and length have already
/// vouched for what it held.
fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, Undecodable> {
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let room = limit.saturating_sub(out.len());
        let mut member = flate2::bufread::GzDecoder::new(rest);
        let inflated = read_limited(&mut member, room).map_err(|error| match error {
            Undecodable::TooLarge { .. } => Undecodable::TooLarge { limit },
            other => other,
        })?;
        out.extend_from_slice(&inflated);
        rest = member.into_inner();
        if !rest.starts_with(&GZIP_MAGIC) {
            return Ok(out);
        }
    }
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

/// Every `charset` of a `Content-Type` value (a sender may repeat it), unquoted.
fn charset_params(content_type: &str) -> Vec<&str> {
    content_type
        .split(';')
        .skip(1)
        .filter_map(|param| {
            let (name, value) = param.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("charset")
                .then(|| value.trim().trim_matches(['"', '\'']).trim())
                .filter(|v| !v.is_empty())
        })
        .collect()
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

    fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
        text.encode_utf16()
            .flat_map(|unit| {
                if big_endian {
                    unit.to_be_bytes()
                } else {
                    unit.to_le_bytes()
                }
            })
            .collect()
    }

    #[test]
    fn utf16_without_a_mark_is_told_by_its_zero_bytes() {
        let json = "{\"name\":\"Zoë\"}";
        for big_endian in [true, false] {
            let body = utf16(json, big_endian);
            let h = headers(&[("content-type", "application/json; charset=utf-16")]);
            assert_eq!(text(decode(&body, &h, POLICY)), json, "declared utf-16");
            assert_eq!(
                text(decode(&body, &HeaderMap::new(), POLICY)),
                json,
                "undeclared (RFC 4627 §3)"
            );
            let xml = "<?xml version=\"1.0\" encoding=\"UTF-16\"?><a>Zoë</a>";
            let h = headers(&[("content-type", "application/xml")]);
            assert_eq!(
                text(decode(&utf16(xml, big_endian), &h, POLICY)),
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>Zoë</a>",
                "XML 1.0 Appendix F"
            );
        }
    }

    #[test]
    fn charsets_that_would_read_as_nothing_are_unsupported_not_malformed() {
        for label in ["iso-2022-kr", "hz-gb-2312", "x-user-defined", "utf-32"] {
            let h = headers(&[(
                "content-type",
                format!("application/json; charset={label}").as_str(),
            )]);
            assert!(
                matches!(
                    decode(b"{}", &h, POLICY),
                    Err(Undecodable::UnsupportedCharset(_))
                ),
                "{label}"
            );
        }
        let mut utf32 = vec![0xff, 0xfe, 0, 0];
        utf32.extend("{}".chars().flat_map(|c| u32::from(c).to_le_bytes()));
        let h = headers(&[("content-type", "application/json; charset=utf-32")]);
        assert!(matches!(
            decode(&utf32, &h, POLICY),
            Err(Undecodable::UnsupportedCharset(_))
        ));
        assert!(matches!(
            decode(&utf32, &HeaderMap::new(), POLICY),
            Err(Undecodable::UnsupportedCharset(_))
        ));
    }

    #[test]
    fn disagreeing_declarations_are_settled_by_the_bytes() {
        let utf8 = "{\"dish\":\"Crème brûlée\"}";
        let h = headers(&[(
            "content-type",
            "application/json; charset=iso-8859-1; charset=utf-8",
        )]);
        assert_eq!(text(decode(utf8.as_bytes(), &h, POLICY)), utf8);
        let h = headers(&[("content-type", "application/json; charset=us-ascii")]);
        assert_eq!(text(decode(utf8.as_bytes(), &h, POLICY)), utf8);
        let xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><a>Zoë Ångström</a>";
        let h = headers(&[("content-type", "text/xml; charset=iso-8859-1")]);
        assert_eq!(text(decode(xml.as_bytes(), &h, POLICY)), xml);
        let latin1 = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a>Zo\xeb</a>";
        let h = headers(&[("content-type", "text/xml; charset=utf-8")]);
        assert_eq!(
            text(decode(latin1, &h, POLICY)),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>Zoë</a>"
        );
        // A true Latin-1 body under a single declaration is still read as declared.
        let h = headers(&[("content-type", "application/json; charset=iso-8859-1")]);
        assert_eq!(
            text(decode(b"{\"a\":\"Zo\xeb\"}", &h, POLICY)),
            "{\"a\":\"Zoë\"}"
        );
    }

    #[test]
    fn undeclared_form_escapes_that_are_not_utf8_are_refused_or_read_in_the_fallback() {
        let form = b"host=h&booking%5Bcustomer%5D%5Bname%5D=Zo%EB+%C5ngstr%F6m";
        let h = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        assert!(matches!(
            decode(form, &h, POLICY),
            Err(Undecodable::Corrupt(_))
        ));
        let policy = BodyPolicy {
            undeclared: Some(encoding_rs::WINDOWS_1252),
            ..POLICY
        };
        let decoded = text(decode(form, &h, policy));
        let name = form_urlencoded::parse(decoded.as_bytes())
            .find(|(key, _)| key.ends_with("[name]"))
            .map(|(_, value)| value.into_owned());
        assert_eq!(name.as_deref(), Some("Zoë Ångström"));
        let utf8 = b"host=h&name=Zo%C3%AB";
        assert_eq!(text(decode(utf8, &h, POLICY)), "host=h&name=Zo%C3%AB");
    }

    #[test]
    fn bytes_after_the_last_gzip_member_are_ignored_as_gzip_does() {
        let body = br#"{"notificationType":"OPEN"}"#;
        let h = headers(&[("content-encoding", "gzip")]);
        for trailer in [&[0u8; 16][..], b"\r\n\r\nGARBAGE"] {
            let mut padded = gzip(body);
            padded.extend_from_slice(trailer);
            assert!(text(decode(&padded, &h, POLICY)).contains("OPEN"));
        }
        let mut two = gzip(b"{\"notification");
        two.extend(gzip(b"Type\":\"OPEN\"}"));
        assert_eq!(
            text(decode(&two, &h, POLICY)),
            "{\"notificationType\":\"OPEN\"}"
        );
        let mut bombs = gzip(&vec![b'0'; 700 << 10]);
        bombs.extend(gzip(&vec![b'0'; 700 << 10]));
        assert_eq!(
            decode(&bombs, &h, POLICY),
            Err(Undecodable::TooLarge { limit: 1 << 20 }),
            "the limit holds across members"
        );
        let truncated = &gzip(body)[..20];
        assert!(matches!(
            decode(truncated, &h, POLICY),
            Err(Undecodable::Corrupt(_))
        ));
    }
}
