//! `diarysync user ...`: operators' accounts from the command line, for the first admin and
//! for scripts. Writes go through the same store functions as the API, recorded in the audit
//! trail as `command line`.

use std::io::BufRead as _;
use std::path::Path;

use anyhow::Context;

use crate::accounts;
use crate::config::Config;
use crate::domain::access::{Actor, Role};
use crate::store::operators::{NewUser, Operators, UserChanges, UserRecord};

/// Where a password comes from.
#[derive(Debug, Clone, Copy)]
pub enum PasswordSource {
    /// The first line of standard input, without its line ending (for scripts:
    /// `echo "$PASSWORD" | diarysync user add ...`).
    Stdin,
    /// A random one, printed once.
    Generate,
}

/// What to do.
#[derive(Debug, Clone)]
pub enum UserAction {
    Add {
        email: String,
        name: String,
        role: String,
        venues: Vec<i64>,
        password: PasswordSource,
    },
    List,
    Disable {
        email: String,
    },
    ResetPassword {
        email: String,
        password: PasswordSource,
    },
}

/// Runs `action` on the store `config` names.
///
/// # Errors
/// When the configuration or store cannot be opened (on SQLite: while the service runs,
/// use the API instead), or the action is invalid.
pub async fn run(config: &Path, action: UserAction) -> anyhow::Result<()> {
    let config =
        Config::load(config).with_context(|| format!("configuration {}", config.display()))?;
    if let Some(path) = config.database_url.strip_prefix("sqlite://")
        && !Path::new(path).exists()
    {
        eprintln!(
            "note: {path} does not exist; a new, empty database is made there (check \
             database_url if you expected an existing one)"
        );
    }
    let options = crate::store::OpenOptions {
        connect_for: config.database_connect_timeout,
        exclusive: false,
        writers: 1,
        synchronous: config.sqlite_synchronous,
    };
    let store = crate::store::open_with(&config.database_url, options)
        .await
        .context(
            "opening the store (a running service holds a SQLite database alone: stop it, or \
             use POST /api/v1/users)",
        )?;
    let result = act(&store, action).await;
    store.close().await;
    result
}

async fn act(store: &dyn Operators, action: UserAction) -> anyhow::Result<()> {
    let by = Actor::command_line();
    match action {
        UserAction::Add {
            email,
            name,
            role,
            venues,
            password,
        } => {
            let email = accounts::normalise_email(&email)?;
            accounts::valid_name(&name).map_err(|e| anyhow::anyhow!(e))?;
            let name = name.trim().to_owned();
            let role: Role = role.parse()?;
            if role.is_venue_scoped() == venues.is_empty() {
                anyhow::bail!("give --venue for a venue_manager, and only for one");
            }
            let (password, shown) = password_from(password)?;
            let hash = accounts::hash_password(&password)?;
            let user = store
                .create_user(
                    NewUser {
                        name,
                        email,
                        role,
                        venues,
                        password_hash: Some(hash),
                    },
                    by,
                )
                .await?;
            println!("added user {} ({}, {})", user.id, user.email, user.role);
            if shown {
                println!("password (shown once): {password}");
            }
        }
        UserAction::List => {
            for user in store.users().await? {
                println!("{}", line(&user));
            }
        }
        UserAction::Disable { email } => {
            let user = find(store, &email).await?;
            let changes = UserChanges {
                disabled: Some(true),
                ..UserChanges::default()
            };
            store.update_user(user.id, changes, by).await?;
            println!("disabled {}; their sessions are ended", user.email);
        }
        UserAction::ResetPassword { email, password } => {
            let user = find(store, &email).await?;
            let (password, shown) = password_from(password)?;
            let changes = UserChanges {
                password_hash: Some(accounts::hash_password(&password)?),
                ..UserChanges::default()
            };
            store.update_user(user.id, changes, by).await?;
            println!("new password for {}; their sessions are ended", user.email);
            if shown {
                println!("password (shown once): {password}");
            }
        }
    }
    Ok(())
}

async fn find(store: &dyn Operators, email: &str) -> anyhow::Result<UserRecord> {
    let email = accounts::normalise_email(email)?;
    store
        .user_by_email(&email)
        .await?
        .with_context(|| format!("no user has e-mail {email}"))
}

/// The password, and whether it was generated (and must be shown).
fn password_from(source: PasswordSource) -> anyhow::Result<(String, bool)> {
    match source {
        PasswordSource::Stdin => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            let password = line.trim_end_matches(['\r', '\n']).to_owned();
            accounts::valid_password(&password)?;
            Ok((password, false))
        }
        PasswordSource::Generate => {
            use base64::Engine as _;
            let mut bytes = [0u8; 18];
            getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
            Ok((
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
                true,
            ))
        }
    }
}

fn line(user: &UserRecord) -> String {
    let venues = if user.venues.is_empty() {
        String::new()
    } else {
        format!(
            " venues {}",
            user.venues
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let state = if user.disabled_at.is_some() {
        " disabled"
    } else {
        ""
    };
    format!(
        "{}\t{}\t{}\t{}{venues}{state}",
        user.id, user.email, user.role, user.name
    )
}
