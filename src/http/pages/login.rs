//! Signing in and out of the pages, and the session every other page needs.
//!
//! A login is an e-mail and password, or the configuration's admin token (the bootstrap
//! admin). Every attempt counts against its account and its address in the database before
//! anything is checked (`accounts`), so neither a burst nor several nodes get past the
//! limits; the password's hash runs within the node's bound on password work. A login form
//! posted from another site is refused (login CSRF), and a session opened with the admin
//! token ends when the token is changed.

use sha2::{Digest, Sha256};

use super::*;

#[derive(Deserialize, Default)]
pub(super) struct LoginQuery {
    next: Option<String>,
}

#[derive(Serialize)]
struct LoginPage {
    #[serde(flatten)]
    chrome: Chrome,
    next: String,
    /// Why the last attempt failed: `token`, `password`, `locked`, `busy` or `both`.
    failed: Option<&'static str>,
}

/// What a bootstrap-admin session keeps of the token it was opened with: a digest, compared
/// on every request, so a new `admin_token` ends those sessions.
fn admin_fingerprint(state: &AppState) -> String {
    use secrecy::ExposeSecret;
    let digest = Sha256::digest(
        format!("diarysync session\0{}", state.admin_token.expose_secret()).as_bytes(),
    );
    hex::encode(&digest[..16])
}

/// Lets the request through with a live session of an enabled user (or the bootstrap admin
/// token), else sends the browser to the login form. The session and the user are read from
/// the database on every request: a disabled user is out at their next click, on any node.
pub(super) async fn require_session(
    State(state): State<AppState>,
    stored: tower_sessions::Session,
    mut request: Request,
    next: Next,
) -> Response {
    match signed_in(&state, &stored).await {
        Ok(Some(session)) => {
            request.extensions_mut().insert(session.actor.clone());
            request.extensions_mut().insert(session);
            next.run(request).await
        }
        Ok(None) => {
            // Inside `/ui` the URI lost its prefix; the original one is the page to come
            // back to.
            let wanted = request
                .extensions()
                .get::<axum::extract::OriginalUri>()
                .and_then(|uri| uri.path_and_query())
                .map_or("/ui/diary", |p| p.as_str());
            let next_page = if request.method() == http::Method::GET {
                wanted
            } else {
                "/ui/diary"
            };
            let target = format!(
                "/ui/login?next={}",
                form_urlencoded::byte_serialize(next_page.as_bytes()).collect::<String>()
            );
            Redirect::to(&target).into_response()
        }
        Err(error) => error.into_response(),
    }
}

fn session_failed(error: tower_sessions::session::Error) -> PageError {
    PageError::Internal(StoreError::Unavailable(format!("session: {error}")))
}

/// The signed-in session, if `stored` is one whose user may still sign in.
async fn signed_in(
    state: &AppState,
    stored: &tower_sessions::Session,
) -> Result<Option<Session>, PageError> {
    let csrf: Option<String> = stored.get(session::CSRF).await.map_err(session_failed)?;
    let Some(csrf) = csrf else { return Ok(None) };
    let user: Option<i64> = stored.get(session::USER_ID).await.map_err(session_failed)?;
    let actor = match user {
        Some(user) => state.operators.user_actor(user).await?,
        None => {
            let fingerprint: Option<String> = stored
                .get(session::BOOTSTRAP_ADMIN)
                .await
                .map_err(session_failed)?;
            (fingerprint.as_deref() == Some(admin_fingerprint(state).as_str()))
                .then(Actor::bootstrap_admin)
        }
    };
    Ok(actor.map(|actor| Session::new(csrf, actor)))
}

pub(super) async fn login_page(
    State(state): State<AppState>,
    stored: tower_sessions::Session,
    query: Result<Query<LoginQuery>, QueryRejection>,
) -> Response {
    let next = query.map(|Query(q)| q.next).unwrap_or_default();
    let next = local_page(next.as_deref(), "/ui/diary").to_owned();
    if matches!(signed_in(&state, &stored).await, Ok(Some(_))) {
        return Redirect::to(&next).into_response();
    }
    let page = LoginPage {
        chrome: Chrome::default(),
        next,
        failed: None,
    };
    render("login.html", &page)
}

/// Either an e-mail and password, or the configuration's admin token.
#[derive(Deserialize)]
pub(super) struct LoginForm {
    email: Option<String>,
    password: Option<String>,
    token: Option<String>,
    next: Option<String>,
}

/// Who a login claims to be.
enum Claim {
    AdminToken(String),
    Password { email: String, password: String },
}

pub(super) async fn login(
    State(state): State<AppState>,
    stored: tower_sessions::Session,
    peer: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return PageError::BadRequest("the login form was incomplete".into()).into_response();
    };
    let next = local_page(form.next.as_deref(), "/ui/diary").to_owned();
    let refused = |status: StatusCode, failed: &'static str| {
        let page = LoginPage {
            chrome: Chrome::default(),
            next: next.clone(),
            failed: Some(failed),
        };
        (status, render("login.html", &page)).into_response()
    };
    let token = form
        .token
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let email = form
        .email
        .map(|e| e.trim().to_lowercase())
        .filter(|e| !e.is_empty());
    let claim = match (token, email) {
        (Some(_), Some(_)) => return refused(StatusCode::BAD_REQUEST, "both"),
        (Some(token), None) => Claim::AdminToken(token),
        (None, Some(email)) => Claim::Password {
            email,
            password: form.password.unwrap_or_default(),
        },
        (None, None) => return refused(StatusCode::UNAUTHORIZED, "password"),
    };
    let account = match &claim {
        Claim::AdminToken(_) => "admin-token".to_owned(),
        Claim::Password { email, .. } => email.clone(),
    };
    let peer = peer.map(|Extension(axum::extract::ConnectInfo(peer))| peer);
    let address =
        super::super::serve::client_address(peer, &headers, state.client_ip_header.as_ref());
    let keys = crate::accounts::attempt_keys(&account, address);
    match state
        .operators
        .login_attempt(keys, Utc::now(), crate::accounts::LOCK_FOR)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!("a login to the pages was refused: too many attempts");
            return refused(StatusCode::TOO_MANY_REQUESTS, "locked");
        }
        Err(error) => return PageError::from(error).into_response(),
    }
    let user = match claim {
        Claim::AdminToken(token) => {
            if !super::super::access::is_admin_token(&state, &token) {
                tracing::warn!("a login to the pages with the admin token failed");
                return refused(StatusCode::UNAUTHORIZED, "token");
            }
            None
        }
        Claim::Password { email, password } => {
            match password_login(&state, &email, password).await {
                Ok(Some(user)) => Some(user),
                Ok(None) => {
                    tracing::warn!("a login to the pages failed");
                    return refused(StatusCode::UNAUTHORIZED, "password");
                }
                Err(LoginError::Busy) => return refused(StatusCode::SERVICE_UNAVAILABLE, "busy"),
                Err(LoginError::Page(error)) => return error.into_response(),
            }
        }
    };
    if let Err(error) = state
        .operators
        .login_succeeded(format!("account:{account}"))
        .await
    {
        return PageError::from(error).into_response();
    }
    match start_session(&state, &stored, user).await {
        Ok(()) => Redirect::to(&next).into_response(),
        Err(error) => error.into_response(),
    }
}

enum LoginError {
    Busy,
    Page(PageError),
}

impl From<StoreError> for LoginError {
    fn from(error: StoreError) -> Self {
        LoginError::Page(error.into())
    }
}

/// The user whose e-mail and password these are, if they may log in. The password is
/// checked within the node's bound on password work, and takes as long for an unknown
/// e-mail as for a known one.
async fn password_login(
    state: &AppState,
    email: &str,
    password: String,
) -> Result<Option<i64>, LoginError> {
    let login = state.operators.login(email).await?;
    let hash = login.as_ref().and_then(|l| l.password_hash.clone());
    let matches = state
        .passwords
        .verify(password, hash)
        .await
        .map_err(|_| LoginError::Busy)?;
    let Some(login) = login.filter(|l| matches && l.user.disabled_at.is_none()) else {
        return Ok(None);
    };
    state.operators.logged_in(login.user.id, Utc::now()).await?;
    Ok(Some(login.user.id))
}

/// A fresh session for `user` (`None`: the bootstrap admin), under a new id (no fixation).
async fn start_session(
    state: &AppState,
    stored: &tower_sessions::Session,
    user: Option<i64>,
) -> Result<(), PageError> {
    let csrf = session::new_csrf()
        .map_err(|_| PageError::Internal(StoreError::Unavailable("no random source".into())))?;
    stored.cycle_id().await.map_err(session_failed)?;
    stored.clear().await;
    stored
        .insert(session::CSRF, csrf)
        .await
        .map_err(session_failed)?;
    match user {
        Some(user) => stored.insert(session::USER_ID, user).await,
        None => {
            stored
                .insert(session::BOOTSTRAP_ADMIN, admin_fingerprint(state))
                .await
        }
    }
    .map_err(session_failed)?;
    stored.save().await.map_err(session_failed)
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    pub(super) csrf: String,
}

pub(super) async fn logout(
    Extension(session): Extension<Session>,
    stored: tower_sessions::Session,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Ok(Form(form)) = form else {
        return Err(PageError::Forbidden);
    };
    if !session.csrf_ok(&form.csrf) {
        return Err(PageError::Forbidden);
    }
    stored.flush().await.map_err(session_failed)?;
    Ok(Redirect::to("/ui/login").into_response())
}
