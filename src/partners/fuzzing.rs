//! Entry points for coverage-guided fuzzing (`fuzz/`, run with `bash scripts/fuzz`) and for
//! replaying the inputs fuzzing once found (`tests/api/fuzz_regressions.rs`), so a crash found
//! overnight becomes a test that runs on every CI build.
//!
//! One input drives one delivery. It may start with header lines that set what the URL would:
//!
//! ```text
//! ?event=new_confirmed_web&account_id=4069&channel_id=3930&booking_id=1234
//! @order.updated
//! {"body": "..."}
//! ```
//!
//! A first line starting with `?` is the query string, a (next) line starting with `@` the
//! `{eventType}` path segment; everything after is the body, byte for byte.
//!
//! The `signature` target reads its first three lines as the raw bytes of the signature,
//! timestamp and `Authorization` headers, then an optional `?query` line and the body; it
//! checks every scheme against them, and that a correct signature of that body verifies.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use secrecy::SecretString;

use super::auth::{self, AuthScheme, KeyLocation, Presented, SignedPart, TimestampWindow};
use super::tourcms::TourCmsApi;
use super::{Delivery, HandlerOptions, HandlerSpec, PartnerHandler};

/// The fuzz targets: each names a handler diarysync ships, plus `tree` for the body reader
/// under every handler and script and `signature` for partner authentication.
pub const TARGETS: [&str; 6] = [
    "lightspeed-kseries",
    "checkfront",
    "tourcms",
    "script",
    "tree",
    "signature",
];

/// Runs one fuzz input through `target` (one of [`TARGETS`]). Its only outcome that matters
/// is not panicking: every handler answers any input with a [`crate::domain::Mapped`].
///
/// # Panics
/// When `target` is not one of [`TARGETS`] (a bug in the caller, not in the input), and
/// whenever the code under test panics, which is what the fuzzer looks for.
pub fn run(target: &str, input: &[u8]) {
    match target {
        "tree" => {
            let _ = super::tree::parse(input);
            return;
        }
        "signature" => return verify_signatures(input),
        _ => {}
    }
    let handler = handlers()
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, handler)| handler)
        .unwrap_or_else(|| panic!("no fuzz target {target:?}; known: {TARGETS:?}"));
    let (query, event_type, body) = split(input);
    let headers = HeaderMap::new();
    let _ = handler.map_versioned(Delivery {
        event_type,
        headers: &headers,
        query,
        body,
    });
}

/// Every handler, configured as a partner would configure it, built once per process: the
/// fuzzer calls [`run`] millions of times, and compiling a script each time would measure
/// the compiler rather than the handler.
pub fn handlers() -> &'static [(&'static str, Arc<dyn PartnerHandler>)] {
    static HANDLERS: OnceLock<Vec<(&'static str, Arc<dyn PartnerHandler>)>> = OnceLock::new();
    HANDLERS.get_or_init(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("partners/salesplay.rhai");
        let tourcms_api = TourCmsApi {
            // Handlers never call out; fetching is the fetcher's, which is not fuzzed here.
            base_url: "http://127.0.0.1:9".to_owned(),
            marketplace_id: "0".to_owned(),
            private_key: Arc::new("key".to_owned().into()),
            hourly_limit: super::tourcms::HOURLY_LIMIT,
        };
        let specs = [
            ("lightspeed-kseries", HandlerOptions::default()),
            ("checkfront", HandlerOptions::default()),
            (
                "tourcms",
                HandlerOptions {
                    api: Some(tourcms_api),
                    ..HandlerOptions::default()
                },
            ),
            (
                "script",
                HandlerOptions {
                    script: Some(script),
                    ..HandlerOptions::default()
                },
            ),
        ];
        specs
            .into_iter()
            .map(|(name, options)| match HandlerSpec::parse(name, options) {
                Ok(spec) => (name, spec.build()),
                Err(error) => panic!("{name}: {error}"),
            })
            .collect()
    })
}

const SIGNATURE: &str = "x-signature";
const TIMESTAMP: &str = "x-timestamp";
const SECRET: &str = "fuzz-secret";

/// Every authentication scheme with a fixed secret, built once per process.
fn schemes() -> &'static [AuthScheme] {
    static SCHEMES: OnceLock<Vec<AuthScheme>> = OnceLock::new();
    SCHEMES.get_or_init(|| {
        let secret = || SecretString::from(SECRET.to_owned());
        let hmac = |signed, timestamp| AuthScheme::HmacSha256 {
            secret: secret(),
            header: HeaderName::from_static(SIGNATURE),
            signed,
            timestamp,
        };
        let window = TimestampWindow {
            header: HeaderName::from_static(TIMESTAMP),
            tolerance: std::time::Duration::from_secs(300),
        };
        vec![
            hmac(SignedPart::Body, None),
            hmac(SignedPart::BodyAndUrl, None),
            hmac(SignedPart::Body, Some(window)),
            AuthScheme::Basic {
                username: "user".to_owned(),
                password: secret(),
            },
            AuthScheme::Bearer { token: secret() },
            AuthScheme::ApiKey {
                location: KeyLocation::Header(HeaderName::from_static(SIGNATURE)),
                value: secret(),
            },
            AuthScheme::ApiKey {
                location: KeyLocation::Param("key".to_owned()),
                value: secret(),
            },
            AuthScheme::UrlToken {
                param: "token".to_owned(),
                secret: secret(),
            },
        ]
    })
}

/// The `signature` target: arbitrary credentials never panic any scheme, and the body's own
/// correct signature always verifies, whatever the body.
fn verify_signatures(input: &[u8]) {
    let mut rest = input;
    let mut headers = HeaderMap::new();
    for name in [SIGNATURE, TIMESTAMP, AUTHORIZATION.as_str()] {
        let (line, after) = raw_line(rest);
        rest = after;
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    let (query, body) = header_line(rest, b'?');
    let url = "https://gateway.example/webhooks/fuzz";
    let presented = |headers| Presented {
        headers,
        query,
        body,
        url,
        received_at: 1_700_000_000,
    };
    for scheme in schemes() {
        let _ = scheme.verify(presented(&headers));
    }

    let mut signed = HeaderMap::new();
    let signature = auth::hmac_sha256_hex(SECRET.as_bytes(), body, None);
    let Ok(value) = HeaderValue::from_str(&signature) else {
        panic!("a hex signature is a valid header value");
    };
    signed.insert(HeaderName::from_static(SIGNATURE), value);
    assert_eq!(
        schemes()[0].verify(presented(&signed)),
        Ok(()),
        "the correct signature of the body was refused"
    );
}

/// The first line of `input` and what follows it; all of `input` when it has no newline.
fn raw_line(input: &[u8]) -> (&[u8], &[u8]) {
    match input.iter().position(|&b| b == b'\n') {
        Some(end) => (&input[..end], &input[end + 1..]),
        None => (input, &[]),
    }
}

/// Splits an input into its optional `?query` and `@eventType` lines and the body.
pub fn split(input: &[u8]) -> (Option<&str>, &str, &[u8]) {
    let (query, rest) = header_line(input, b'?');
    let (event_type, body) = header_line(rest, b'@');
    (query, event_type.unwrap_or("order.updated"), body)
}

/// The first line's text after `marker`, and what follows it; or no line and all of `input`.
fn header_line(input: &[u8], marker: u8) -> (Option<&str>, &[u8]) {
    let Some(line_end) = input.iter().position(|&b| b == b'\n') else {
        return (None, input);
    };
    match input[..line_end]
        .strip_prefix(&[marker])
        .and_then(|line| std::str::from_utf8(line).ok())
    {
        Some(line) => (Some(line), &input[line_end + 1..]),
        None => (None, input),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines_set_the_query_and_event_type_and_the_rest_is_the_body() {
        let (query, event, body) = split(b"?a=1&b=2\n@booking.update\n{\"x\": 1}\n");
        assert_eq!(query, Some("a=1&b=2"));
        assert_eq!(event, "booking.update");
        assert_eq!(body, b"{\"x\": 1}\n");

        let (query, event, body) = split(b"{\"x\": 1}");
        assert_eq!(
            (query, event, body),
            (None, "order.updated", &b"{\"x\": 1}"[..])
        );
    }

    #[test]
    fn the_signature_target_verifies_a_correct_signature_among_garbage() {
        run(
            "signature",
            b"\xff\xfe\n12\nBearer fuzz-secret\n?token=fuzz-secret\nbody",
        );
        run("signature", b"");
        run("signature", b"sha256=zz\n\n\n\n");
    }

    #[test]
    fn every_target_runs() {
        for target in TARGETS {
            run(target, b"?event=x\n@y\n{}");
        }
        assert_eq!(handlers().len(), TARGETS.len() - 2);
    }
}
