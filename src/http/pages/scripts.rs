//! A stored script partner's script on the pages (integrators and admins): the newest
//! version (or an older one, to go back to) in an editor, tried on one of the partner's
//! stored events beside what it runs now, then saved as a new version and its events
//! replayed. Through the same checks as the API (`http::partner_scripts`).

use super::super::partner_scripts::{ScriptView, TryResult, save, script_view, try_on_event};
use super::*;
use crate::store::partner_scripts::ScriptVersion;
use crate::store::{EventFilter, EventSummary};

/// How many of the partner's newest events the page offers to try a script on.
const EVENTS_OFFERED: usize = 30;
/// How many of its newest events are read to find those: refused ones are left out.
const EVENTS_READ: i64 = 500;

#[derive(Serialize)]
struct ScriptPage {
    #[serde(flatten)]
    chrome: Chrome,
    #[serde(flatten)]
    script: ScriptView,
    /// The text in the editor: a draft tried, an older version, or the newest.
    source: String,
    /// Which saved version is in the editor, if it is one unchanged.
    showing: Option<i64>,
    events: Vec<EventSummary>,
    event_id: Option<i64>,
    tried: Option<TriedView>,
}

/// A try as the page shows it: the result with both mappings as indented JSON.
#[derive(Serialize)]
struct TriedView {
    #[serde(flatten)]
    result: TryResult,
    tried_json: String,
    current_json: Option<String>,
}

async fn page(
    state: &AppState,
    session: &Session,
    name: &str,
    source: Option<String>,
    version: Option<i64>,
    event_id: Option<i64>,
) -> Result<ScriptPage, PageError> {
    allowed(&session.actor, Permission::Integrate)?;
    let script = script_view(state, name).await?;
    let older = match version {
        Some(number) => Some(
            state
                .partner_sync
                .registry()
                .script_version(name.to_owned(), number)
                .await?
                .ok_or(PageError::NotFound("script version"))?,
        ),
        None => None,
    };
    let shown: Option<&ScriptVersion> = older.as_ref().or(script.current.as_ref());
    let showing = source.is_none().then(|| shown.map(|s| s.number)).flatten();
    let source = source
        .or_else(|| shown.and_then(|s| s.source.clone()))
        .unwrap_or_default();
    // Refused deliveries (a wrong token, a bad signature) are not the partner's payloads
    // and cannot be tried: a burst of them must not push its real events off the list.
    let mut events = state
        .gateway
        .store()
        .events(&EventFilter {
            partner: Some(name.to_owned()),
            limit: EVENTS_READ,
            ..EventFilter::default()
        })
        .await?;
    events.retain(|e| e.outcome != Outcome::Rejected.as_str() && e.purged_at.is_none());
    events.truncate(EVENTS_OFFERED);
    Ok(ScriptPage {
        chrome: Chrome::new(session, "partners"),
        script,
        source,
        showing,
        event_id: event_id.or(events.first().map(|e| e.id)),
        events,
        tried: None,
    })
}

pub(super) async fn script(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, PageError> {
    let number = |key: &str| -> Result<Option<i64>, PageError> {
        params
            .get(key)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse()
                    .map_err(|_| PageError::BadRequest(format!("{key} is a number")))
            })
            .transpose()
    };
    let mut page = page(&state, &session, &name, None, number("version")?, None).await?;
    page.chrome.notice = match (params.get("done").map(String::as_str), number("number")?) {
        (Some("saved"), Some(number)) => Some(format!(
            "Saved as version {number}: every node runs it within seconds. Replay the \
             partner's events below to bring what it maps into the diary."
        )),
        (Some("unchanged"), _) => {
            Some("Nothing saved: this text is the newest version already.".to_owned())
        }
        _ => None,
    };
    Ok(render("script.html", &page))
}

#[derive(Deserialize)]
pub(super) struct ScriptForm {
    csrf: String,
    /// `try` or `save`.
    action: String,
    source: String,
    event_id: Option<String>,
}

pub(super) async fn try_or_save(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    form: Result<Form<ScriptForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| PageError::BadRequest(e.body_text()))?;
    if !session.csrf_ok(&form.csrf) {
        return Err(PageError::Forbidden);
    }
    allowed(&session.actor, Permission::Integrate)?;
    // Browsers send a textarea's line ends as CRLF; the text saved is the one typed.
    let source = form.source.replace("\r\n", "\n");
    match form.action.as_str() {
        "save" => {
            let saved = match save(&state, session.actor.clone(), &name, source.clone()).await {
                Ok(saved) => saved,
                // A draft that does not compile stays in the editor with the compiler's
                // message, not on an error page that loses it.
                Err(crate::error::ApiError::Unprocessable(message)) => {
                    let mut page = page(&state, &session, &name, Some(source), None, None).await?;
                    page.chrome.notice = Some(format!("Not saved: {message}"));
                    return Ok(render("script.html", &page));
                }
                Err(other) => return Err(other.into()),
            };
            let done = if saved.saved.created {
                "saved"
            } else {
                "unchanged"
            };
            // A saved partner's name is letters, digits, '-', '_' and '.': safe in a path.
            let to = format!(
                "/ui/partners/{name}/script?done={done}&number={}",
                saved.saved.number
            );
            Ok(Redirect::to(&to).into_response())
        }
        "try" => {
            let event_id = form
                .event_id
                .as_deref()
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .ok_or_else(|| PageError::BadRequest("which stored event to try it on?".into()))?
                .parse::<i64>()
                .map_err(|_| PageError::BadRequest("an event is given by its number".into()))?;
            let mut page = page(
                &state,
                &session,
                &name,
                Some(source.clone()),
                None,
                Some(event_id),
            )
            .await?;
            let result = match try_on_event(&state, &name, event_id, Some(source)).await {
                Ok(result) => result,
                // A draft that does not compile is shown beside the editor, not on an
                // error page that loses it.
                Err(crate::error::ApiError::Unprocessable(message)) => {
                    page.chrome.notice = Some(message);
                    return Ok(render("script.html", &page));
                }
                Err(crate::error::ApiError::NotFound("event")) => {
                    page.chrome.notice = Some(format!(
                        "Event {event_id} cannot be tried: it was refused, its payload was \
                         purged, or it does not exist. Choose another."
                    ));
                    return Ok(render("script.html", &page));
                }
                Err(other) => return Err(other.into()),
            };
            let pretty = |mapped: &crate::domain::Mapped| {
                serde_json::to_string_pretty(mapped).unwrap_or_default()
            };
            page.tried = Some(TriedView {
                tried_json: pretty(result.mapped()),
                current_json: result.current_mapped().map(pretty),
                result,
            });
            Ok(render("script.html", &page))
        }
        other => Err(PageError::BadRequest(format!("unknown action {other:?}"))),
    }
}
