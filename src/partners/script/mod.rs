//! Partners onboarded with a script instead of a release: a Rhai file maps the payload.
//!
//! The script defines `fn handle(event)` and returns what the built-in handlers return, as a
//! map (the script API is documented in `docs/SCRIPTING.md`). It runs sandboxed: no I/O (no
//! modules, no printing), no clock, and hard limits on operations, call depth, string, array
//! and map sizes, so a runaway or hostile script fails that one event (`failed`,
//! `script_error`) and never the process. The file is reloaded when it changes; each event
//! records the content hash of the version that mapped it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rhai::{AST, Array, Dynamic, Engine, ImmutableString, Map, Scope};
use sha2::{Digest, Sha256};

use super::tree;

mod result;
use super::{Delivery, PartnerHandler};
use crate::domain::{Mapped, Reason};
use result::mapped_of;

/// Operations one event may cost; a busy loop hits this in milliseconds.
const MAX_OPERATIONS: u64 = 500_000;
const MAX_CALL_LEVELS: usize = 32;
const MAX_STRING_BYTES: usize = 1 << 20;
const MAX_COLLECTION_ITEMS: usize = 100_000;
/// Commands one event may produce.
const MAX_COMMANDS: usize = 1_000;

/// Headers a script never sees: credentials.
const HIDDEN_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

/// A compiled version of a script.
#[derive(Debug)]
struct Compiled {
    modified: Option<SystemTime>,
    length: u64,
    version: String,
    ast: Result<Arc<AST>, String>,
}

/// The `script` handler for one partner.
#[derive(Debug)]
pub struct ScriptHandler {
    origin: Origin,
    engine: Engine,
    current: RwLock<Option<Arc<Compiled>>>,
}

/// Where a script's text is kept.
#[derive(Debug)]
enum Origin {
    /// A file of the server's, re-read when it changes.
    File(PathBuf),
    /// One saved version, compiled once.
    Saved,
}

/// Where a partner's script is: a file named in the configuration file, or a version saved
/// in the database (edited on the pages, issue 17).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptSource {
    File(PathBuf),
    Saved(Arc<SavedScript>),
}

/// One saved version of a partner's script.
#[derive(Clone, PartialEq, Eq)]
pub struct SavedScript {
    /// The partner's own version number: 1, 2, ... in the order they were saved.
    pub number: i64,
    /// The Rhai text.
    pub source: String,
}

impl std::fmt::Debug for SavedScript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedScript")
            .field("number", &self.number)
            .field("version", &version_of(&self.source))
            .finish_non_exhaustive()
    }
}

/// The script a script partner made on the pages starts with: it keeps every delivery as a
/// notice (processed, nothing applied), so its deliveries are stored to try the real mapping
/// on before it is saved, and replayed after.
pub const STARTER: &str = r#"// Keeps every delivery as a notice until the mapping is written (docs/SCRIPTING.md):
// try a new version on the stored events on this page, save it, then replay them.
fn handle(event) {
    #{ notice: "not mapped yet: " + event.type }
}
"#;

/// The largest script kept in the database, in bytes: far beyond any partner's mapping
/// (the seeds' run to a few hundred lines), far below what makes compiling it costly.
pub const MAX_SCRIPT_BYTES: usize = 256 * 1024;

/// The sandboxed engine every script runs in.
fn engine() -> Engine {
    let mut engine = Engine::new();
    engine.set_max_operations(MAX_OPERATIONS);
    engine.set_max_call_levels(MAX_CALL_LEVELS);
    engine.set_max_expr_depths(64, 32);
    engine.set_max_string_size(MAX_STRING_BYTES);
    engine.set_max_array_size(MAX_COLLECTION_ITEMS);
    engine.set_max_map_size(MAX_COLLECTION_ITEMS);
    engine.on_print(|_| {});
    engine.on_debug(|_, _, _| {});
    engine.on_progress(past_deadline);
    engine.disable_symbol("eval");
    // Data carried inside a function pointer escapes the engine's size checks: a curried
    // pointer padded into an array built gigabytes in one step, and closures capturing a
    // large string ran callbacks for 30 s past the time limit (found by the third outside
    // attack on issue 17). Scripts map payloads: they need neither (closures cannot
    // capture, `no_closure`, and `curry` is gone).
    engine.disable_symbol("curry");
    // Rhai's own `sleep` held a thread for as long as a script asked (found by the outside
    // attack on issue 17): a script has no clock, so it has no sleep either.
    engine.register_fn(
        "sleep",
        |_: rhai::INT| -> Result<(), Box<rhai::EvalAltResult>> {
            Err("sleep is not available to scripts".into())
        },
    );
    engine.register_fn(
        "sleep",
        |_: rhai::FLOAT| -> Result<(), Box<rhai::EvalAltResult>> {
            Err("sleep is not available to scripts".into())
        },
    );
    engine.register_fn("one_or_many", one_or_many);
    // Shadow Rhai's own: `t.replace("x", s)` writes `s` once per "x", a result the square of
    // its inputs built in one step, before any limit is looked at (70 s and 5 GB for two
    // deliveries, found by the outside attack on issue 17).
    engine.register_fn("replace", replace_text);
    engine.register_fn(
        "replace",
        |text: &mut ImmutableString, find: char, with: &str| {
            replace_text(text, &find.to_string(), with)
        },
    );
    // Shadows Rhai's own, which hands any text to rust_decimal: a payload amount of a few
    // thousand `_` separators overflowed the stack there (see `wire::parse_decimal`).
    engine.register_fn("parse_decimal", parse_decimal);
    engine
}

/// How long one event's script may run, whatever it does. The operation limit bounds the
/// steps a script takes, not what one step costs: the engine measures a collection's whole
/// nested size at each step, so a script that nests data deeply costs the square of its
/// depth and ran for minutes inside its operation limit (found by the outside attack on
/// issue 17). Far above any real mapping's time (milliseconds).
pub const SCRIPT_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

thread_local! {
    /// When the script running on this thread must stop (each runs on a thread of its own).
    static DEADLINE: std::cell::Cell<Option<std::time::Instant>> =
        const { std::cell::Cell::new(None) };
}

/// The engine's progress callback: stops the script once its deadline has passed (looked
/// at every 256 operations, so the clock costs nothing measurable).
fn past_deadline(operations: u64) -> Option<Dynamic> {
    if !operations.is_multiple_of(256) {
        return None;
    }
    let deadline = DEADLINE.with(std::cell::Cell::get)?;
    (std::time::Instant::now() > deadline).then(|| Dynamic::from(TIME_LIMIT_TOKEN))
}

/// What a script stopped at its deadline is terminated with.
const TIME_LIMIT_TOKEN: &str = "time limit";

/// `text.replace(find, with)` in scripts, refused before it is built when its result would
/// be longer than a script's strings may be.
fn replace_text(
    text: &mut ImmutableString,
    find: &str,
    with: &str,
) -> Result<(), Box<rhai::EvalAltResult>> {
    if find.is_empty() {
        return Ok(());
    }
    let found = text.matches(find).count();
    let length = text
        .len()
        .checked_sub(found.saturating_mul(find.len()))
        .and_then(|rest| rest.checked_add(found.checked_mul(with.len())?));
    match length {
        Some(length) if length <= MAX_STRING_BYTES => {
            *text = text.replace(find, with).into();
            Ok(())
        }
        _ => Err(Box::new(rhai::EvalAltResult::ErrorDataTooLarge(
            "Length of string".into(),
            rhai::Position::NONE,
        ))),
    }
}

/// `parse_decimal(text)` in scripts: the payload's digits exactly, or an error.
fn parse_decimal(text: &str) -> Result<rust_decimal::Decimal, Box<rhai::EvalAltResult>> {
    super::wire::parse_decimal(text.trim()).ok_or_else(|| {
        format!(
            "not an amount: {:?}",
            text.chars().take(40).collect::<String>()
        )
        .into()
    })
}

/// Partners that turn XML into JSON collapse a single item into an object; this gives an
/// array either way (`()` gives an empty one).
fn one_or_many(value: Dynamic) -> Array {
    if value.is_unit() {
        Array::new()
    } else if value.is_array() {
        value.into_array().unwrap_or_default()
    } else {
        vec![value]
    }
}

impl ScriptHandler {
    /// A handler running the script in the file at `path`.
    pub fn new(path: PathBuf) -> ScriptHandler {
        ScriptHandler {
            origin: Origin::File(path),
            engine: engine(),
            current: RwLock::new(None),
        }
    }

    /// A handler running `source`, compiled now; one that does not compile fails every
    /// event with its error (`script_error`), as a file's does.
    pub fn saved(source: &str) -> ScriptHandler {
        let engine = engine();
        let ast = compile(&engine, source);
        ScriptHandler::compiled_once(engine, source, ast)
    }

    /// A handler running `source`, if it is one that may be saved ([`check_source`]):
    /// compiled once, for trying a draft.
    ///
    /// # Errors
    /// As [`check_source`].
    pub fn draft(source: &str) -> Result<ScriptHandler, String> {
        check_size(source)?;
        let engine = engine();
        let ast = compile(&engine, source)?;
        Ok(ScriptHandler::compiled_once(engine, source, Ok(ast)))
    }

    /// A handler that runs `source` as compiled (`ast`), never reloaded.
    fn compiled_once(engine: Engine, source: &str, ast: Result<AST, String>) -> ScriptHandler {
        let compiled = Compiled {
            modified: None,
            length: 0,
            version: version_of(source),
            ast: ast.map(Arc::new),
        };
        ScriptHandler {
            origin: Origin::Saved,
            engine,
            current: RwLock::new(Some(Arc::new(compiled))),
        }
    }

    /// The handler for `source`.
    pub fn of(source: &ScriptSource) -> ScriptHandler {
        match source {
            ScriptSource::File(path) => ScriptHandler::new(path.clone()),
            ScriptSource::Saved(saved) => ScriptHandler::saved(&saved.source),
        }
    }

    /// The compiled script: a saved one as compiled, a file's reloaded if it changed since
    /// it was last read.
    fn compiled(&self) -> Result<Arc<Compiled>, String> {
        let path = match &self.origin {
            Origin::File(path) => path,
            Origin::Saved => {
                let current = match self.current.read() {
                    Ok(current) => current.clone(),
                    Err(poisoned) => poisoned.into_inner().clone(),
                };
                return current.ok_or_else(|| "the script was not compiled".to_owned());
            }
        };
        let metadata = std::fs::metadata(path)
            .map_err(|e| format!("cannot read script {}: {e}", path.display()))?;
        let modified = metadata.modified().ok();
        let length = metadata.len();
        if let Ok(current) = self.current.read()
            && let Some(current) = current.as_ref()
            && current.modified == modified
            && current.length == length
        {
            return Ok(Arc::clone(current));
        }
        let source = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read script {}: {e}", path.display()))?;
        let version = version_of(&source);
        let ast = compile(&self.engine, &source)
            .map(Arc::new)
            .map_err(|e| format!("script {}: {e}", path.display()));
        if let Err(error) = &ast {
            tracing::error!(script = %path.display(), %version, %error, "script does not compile");
        }
        let compiled = Arc::new(Compiled {
            modified,
            length,
            version,
            ast,
        });
        if let Ok(mut current) = self.current.write() {
            *current = Some(Arc::clone(&compiled));
        }
        Ok(compiled)
    }
}

/// A script's version: the start of its content's SHA-256.
pub fn version_of(source: &str) -> String {
    hex::encode(&Sha256::digest(source.as_bytes())[..8])
}

fn fail(detail: impl Into<String>) -> Mapped {
    Mapped::Fail {
        reason: Reason::ScriptError,
        detail: detail.into(),
    }
}

impl PartnerHandler for ScriptHandler {
    fn map(&self, delivery: Delivery<'_>) -> Mapped {
        self.map_versioned(delivery).0
    }

    fn map_versioned(&self, delivery: Delivery<'_>) -> (Mapped, Option<String>) {
        let compiled = match self.compiled() {
            Ok(compiled) => compiled,
            Err(detail) => return (fail(detail), None),
        };
        let version = Some(compiled.version.clone());
        let ast = match &compiled.ast {
            Ok(ast) => ast,
            Err(detail) => return (fail(detail.clone()), version),
        };
        // On a thread of its own with a deep stack: the engine's limits bound how much data a
        // script builds, not how deeply it nests it, and building, measuring and dropping a
        // map nested 10,000 deep overflowed a request thread's stack, which aborts the
        // process (found by the outside attack on issue 17).
        let run = || self.run(ast, delivery);
        let mapped = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("script".into())
                .stack_size(SCRIPT_STACK_BYTES)
                .spawn_scoped(scope, run)
                .map_err(|e| fail(format!("no thread to run the script on: {e}")))
                .and_then(|thread| {
                    thread
                        .join()
                        .map_err(|_| fail("the script's thread panicked"))
                })
        });
        (mapped.unwrap_or_else(|failed| failed), version)
    }

    fn is_costly(&self) -> bool {
        true
    }
}

/// The stack a script runs on: reserved, touched only as deep as the script goes. Enough
/// for the deepest data the engine's size limits let a script build ([`MAX_COLLECTION_ITEMS`]
/// levels), measured with room to spare in a debug build.
const SCRIPT_STACK_BYTES: usize = 512 << 20;

impl ScriptHandler {
    /// Runs `fn handle(event)` on one delivery.
    fn run(&self, ast: &AST, delivery: Delivery<'_>) -> Mapped {
        let event = match event_of(delivery) {
            Ok(event) => event,
            Err(mapped) => return mapped,
        };
        DEADLINE.with(|deadline| {
            deadline.set(std::time::Instant::now().checked_add(SCRIPT_TIME_LIMIT));
        });
        let result = self
            .engine
            .call_fn::<Dynamic>(&mut Scope::new(), ast, "handle", (event,));
        DEADLINE.with(|deadline| deadline.set(None));
        match result {
            Ok(value) => mapped_of(value).unwrap_or_else(|(reason, detail)| Mapped::Fail {
                reason,
                detail: format!("script result: {detail}"),
            }),
            Err(error) => Mapped::Fail {
                reason: failure_of(&error),
                detail: match *error {
                    rhai::EvalAltResult::ErrorTerminated(..) => format!(
                        "script failed: it ran over its time limit of {} s",
                        SCRIPT_TIME_LIMIT.as_secs()
                    ),
                    _ => format!("script failed: {error}"),
                },
            },
        }
    }
}

/// The `event` a script receives.
fn event_of(delivery: Delivery<'_>) -> Result<Dynamic, Mapped> {
    let (format, body) = tree::parse(delivery.body).map_err(|e| Mapped::Ignore {
        reason: Reason::MalformedPayload,
        detail: e.to_string(),
    })?;
    let mut headers = Map::new();
    for (name, value) in delivery.headers {
        if HIDDEN_HEADERS.contains(&name.as_str()) {
            continue;
        }
        headers.insert(
            name.as_str().into(),
            Dynamic::from(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        );
    }
    let mut query = Map::new();
    for (key, value) in form_urlencoded::parse(delivery.query.unwrap_or_default().as_bytes()) {
        query.insert(key.as_ref().into(), Dynamic::from(value.into_owned()));
    }
    let mut event = Map::new();
    event.insert("type".into(), Dynamic::from(delivery.event_type.to_owned()));
    event.insert("format".into(), Dynamic::from(format.as_str()));
    event.insert("body".into(), body);
    event.insert("headers".into(), Dynamic::from_map(headers));
    event.insert("query".into(), Dynamic::from_map(query));
    Ok(Dynamic::from_map(event))
}

/// Whether a script's runtime error is a limit it hit (`script_limit`: too many
/// operations, too much data, too deep) or another error (`script_error`).
fn failure_of(error: &rhai::EvalAltResult) -> Reason {
    use rhai::EvalAltResult as E;
    match error {
        E::ErrorTooManyOperations(_)
        | E::ErrorDataTooLarge(..)
        | E::ErrorStackOverflow(_)
        | E::ErrorTooManyVariables(_)
        | E::ErrorTerminated(..) => Reason::ScriptLimit,
        E::ErrorInFunctionCall(_, _, inner, _) => failure_of(inner),
        _ => Reason::ScriptError,
    }
}

/// Checks that a script file compiles, for start-up validation.
///
/// # Errors
/// The compile error, with its position.
pub fn check(path: &Path) -> Result<String, String> {
    let source = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    compile(&engine(), &source).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(version_of(&source))
}

/// A script's text as it is kept and run: without the byte-order mark an editor may put
/// first (the compiler refuses it).
pub fn without_bom(source: String) -> String {
    match source.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_owned(),
        None => source,
    }
}

/// Checks a script to be saved: at most [`MAX_SCRIPT_BYTES`], compiles, and defines
/// `fn handle(event)`. Returns its version (content hash).
///
/// # Errors
/// What is wrong, with the compiler's line and column.
pub fn check_source(source: &str) -> Result<String, String> {
    check_size(source)?;
    compile(&engine(), source)?;
    Ok(version_of(source))
}

fn check_size(source: &str) -> Result<(), String> {
    // A NUL does not survive every database's text (PostgreSQL refuses it) and is no part
    // of any script.
    if source.contains('\0') {
        return Err("a script cannot contain NUL characters".into());
    }
    if source.len() > MAX_SCRIPT_BYTES {
        return Err(format!(
            "the script is {} bytes; at most {MAX_SCRIPT_BYTES} are kept",
            source.len()
        ));
    }
    Ok(())
}

/// Compiles `source` and checks it defines `fn handle(event)`, the one function called.
fn compile(engine: &Engine, source: &str) -> Result<AST, String> {
    let ast = engine
        .compile(source)
        .map_err(|e| format!("does not compile: {e}"))?;
    if !ast
        .iter_functions()
        .any(|f| f.name == "handle" && f.params.len() == 1)
    {
        return Err("defines no fn handle(event): the function called for each event".into());
    }
    Ok(ast)
}

#[cfg(test)]
mod tests;
