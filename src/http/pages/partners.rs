//! Partners on the pages (integrators and admins): every partner, the file's shown as such;
//! a new partner kept in the database; a secret rotation (add the next secret, see which one
//! deliveries are signed with on the event page, retire the old one); switching a partner off
//! and on. Through the same checks as the API (`http::partner_settings`).

use super::*;
use crate::gateway::registry::PartnerInfo;

#[derive(Serialize)]
struct PartnersPage {
    #[serde(flatten)]
    chrome: Chrome,
    partners: Vec<PartnerInfo>,
    handlers: &'static [&'static str],
    schemes: [&'static str; 6],
    sealing: bool,
}

pub(super) async fn partners(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, PageError> {
    allowed(&session.actor, Permission::Integrate)?;
    let partners = state.partner_sync.catalogue().await?;
    let mut chrome = Chrome::new(&session, "partners");
    chrome.notice = params.get("done").map(|done| match done.as_str() {
        "created" => {
            "Partner created: it takes deliveries now, on every node within seconds.".to_owned()
        }
        "secret" => {
            "Secret added: deliveries signed with it are taken beside the others.".to_owned()
        }
        "retired" => {
            "Secret retired: deliveries signed with it are refused from now on.".to_owned()
        }
        _ => "Partner changed.".to_owned(),
    });
    let page = PartnersPage {
        chrome,
        partners,
        handlers: &crate::config::STORED_HANDLERS,
        schemes: crate::config::AUTH_SCHEMES,
        sealing: state.partner_sync.sealer().is_some(),
    };
    Ok(render("partners.html", &page))
}

/// Any partner form: which one is named by `action`.
#[derive(Deserialize)]
pub(super) struct PartnerForm {
    csrf: String,
    action: String,
    name: String,
    handler: Option<String>,
    scheme: Option<String>,
    /// `header` for hmac-sha256 and api-key; `param` for api-key and url-token; `username`
    /// for basic.
    header: Option<String>,
    param: Option<String>,
    username: Option<String>,
    secret: Option<String>,
    label: Option<String>,
    secret_id: Option<i64>,
}

fn text(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

pub(super) async fn change_partner(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    form: Result<Form<PartnerForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| PageError::BadRequest(e.body_text()))?;
    if !session.csrf_ok(&form.csrf) {
        return Err(PageError::Forbidden);
    }
    allowed(&session.actor, Permission::Integrate)?;
    let actor = session.actor.clone();
    let failed = |error: crate::error::ApiError| PageError::BadRequest(error.to_string());
    let done = match form.action.as_str() {
        "create" => {
            let mut auth = serde_json::Map::new();
            let scheme = text(form.scheme).unwrap_or_default();
            auth.insert("scheme".into(), scheme.into());
            for (key, value) in [
                ("header", text(form.header)),
                ("param", text(form.param)),
                ("username", text(form.username)),
            ] {
                if let Some(value) = value {
                    auth.insert(key.into(), value.into());
                }
            }
            let mut definition = serde_json::Map::new();
            definition.insert(
                "handler".into(),
                text(form.handler).unwrap_or_default().into(),
            );
            definition.insert("auth".into(), auth.into());
            // A script partner starts with a script that keeps every delivery as a notice:
            // its deliveries are stored to try the real mapping on, then replayed.
            let script_source = (definition["handler"] == "script")
                .then(|| crate::partners::script::STARTER.to_owned());
            super::super::partner_settings::create(
                &state,
                actor,
                super::super::partner_settings::NewPartner {
                    name: form.name.trim().to_owned(),
                    secret: text(form.secret),
                    script_source,
                    definition,
                },
            )
            .await
            .map_err(failed)?;
            "created"
        }
        "secret" => {
            let secret = text(form.secret)
                .ok_or_else(|| PageError::BadRequest("the new secret is missing".into()))?;
            super::super::partner_settings::rotate(
                &state,
                actor,
                form.name,
                secret,
                text(form.label),
            )
            .await
            .map_err(failed)?;
            "secret"
        }
        "retire" => {
            let id = form
                .secret_id
                .ok_or_else(|| PageError::BadRequest("which secret?".into()))?;
            state
                .partner_sync
                .registry()
                .retire_secret(form.name, id, actor)
                .await?;
            "retired"
        }
        "enable" | "disable" => {
            if state.gateway.is_file_partner(&form.name) {
                return Err(PageError::BadRequest(
                    "this partner is managed by the configuration file".into(),
                ));
            }
            let enabled = form.action == "enable";
            state
                .partner_sync
                .registry()
                .update_partner(form.name, None, Some(enabled), actor)
                .await?;
            "changed"
        }
        _ => return Err(PageError::BadRequest("unknown action".into())),
    };
    state.partner_sync.poll().await?;
    Ok(Redirect::to(&format!("/ui/partners?done={done}")).into_response())
}
