use std::path::PathBuf;

use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use diarysync::app::App;
use diarysync::config::Config;
use diarysync::gateway::Gateway;
use diarysync::partners::Delivery;
use diarysync::store::ReplayFilter;
use indicatif::{ProgressBar, ProgressStyle};

/// The process's allocator for Rust's own allocations (SQLite's C code keeps the C library's).
/// An event is parsed, matched and rendered into many short-lived strings, maps and JSON
/// values, and with the C library's allocator a profile of the SQLite writer spent about a
/// tenth of its time in `malloc` and `free`; mimalloc's thread-local free lists serve that
/// pattern with less work (measured in docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// diarysync: partner webhooks into a venue's diary.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the service.
    Serve {
        /// The configuration file (TOML); DIARYSYNC_* variables override its keys.
        #[arg(long, env = "DIARYSYNC_CONFIG", default_value = "diarysync.toml")]
        config: PathBuf,
    },
    /// Re-runs stored events through the current handlers (e.g. after a handler fix).
    Replay {
        #[arg(long, env = "DIARYSYNC_CONFIG", default_value = "diarysync.toml")]
        config: PathBuf,
        /// Only this partner's events.
        #[arg(long)]
        partner: Option<String>,
        /// Only events with this outcome (failed, ignored, processed, pending).
        #[arg(long)]
        outcome: Option<String>,
        /// Only events with this reason (e.g. script_error, unrecognised_model).
        #[arg(long)]
        reason: Option<String>,
        /// Only events received at or after this time (RFC 3339).
        #[arg(long)]
        from: Option<DateTime<Utc>>,
        /// Only events received before this time (RFC 3339).
        #[arg(long)]
        to: Option<DateTime<Utc>>,
    },
    /// Writes a consistent copy of the SQLite database to a new file, while the service runs.
    Backup {
        #[arg(long, env = "DIARYSYNC_CONFIG", default_value = "diarysync.toml")]
        config: PathBuf,
        /// The file to write (must not exist).
        target: PathBuf,
    },
    /// Plays simulated service days against a fresh diarysync and prints how right the
    /// diary came out: precision, recall, ambiguity. Exits 1 below the thresholds.
    Simulate {
        /// How many service days.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// The seed: the same seed gives the same days.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The database to play on (it must be empty of these days); a fresh SQLite file in
        /// a temporary directory when absent.
        #[arg(long)]
        database_url: Option<String>,
        /// Print every mistake, not only the first ten.
        #[arg(long)]
        verbose: bool,
        /// Fail below this precision.
        #[arg(long, default_value_t = 1.0)]
        min_precision: f64,
        /// Fail below this recall.
        #[arg(long, default_value_t = 0.98)]
        min_recall: f64,
    },
    /// Manages operators' accounts: the first admin, and scripts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Works with partner handlers.
    Handler {
        #[command(subcommand)]
        command: HandlerCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Adds a user. The password is read from standard input with --password-stdin, else a
    /// random one is generated and printed once.
    Add {
        #[arg(long, env = "DIARYSYNC_CONFIG", default_value = "diarysync.toml")]
        config: PathBuf,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// admin, integrator or venue_manager.
        #[arg(long)]
        role: String,
        /// A venue a venue_manager sees (repeat for several).
        #[arg(long = "venue")]
        venues: Vec<i64>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Lists every user (never their passwords or tokens).
    List {
        #[arg(long, env = "DIARYSYNC_CONFIG", default_value = "diarysync.toml")]
        config: PathBuf,
    },
    /// Disables a user: their sessions end and their tokens stop working at once.
    Disable {
        #[arg(long, env = "DIARYSYNC_CONFIG", default_value = "diarysync.toml")]
        config: PathBuf,
        #[arg(long)]
        email: String,
    },
    /// Sets a new password (from standard input with --password-stdin, else generated and
    /// printed once); the user's sessions end.
    ResetPassword {
        #[arg(long, env = "DIARYSYNC_CONFIG", default_value = "diarysync.toml")]
        config: PathBuf,
        #[arg(long)]
        email: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum HandlerCommand {
    /// Runs a partner's handler on a payload file and prints the commands it produces.
    Test {
        #[arg(long, env = "DIARYSYNC_CONFIG", default_value = "diarysync.toml")]
        config: PathBuf,
        /// The partner whose handler to run.
        #[arg(long)]
        partner: String,
        /// The event type, as in the URL's {eventType}.
        #[arg(long = "event")]
        event_type: String,
        /// The payload's Content-Type, e.g. "application/json; charset=ISO-8859-1".
        #[arg(long)]
        content_type: Option<String>,
        /// The payload's Content-Encoding, e.g. "gzip".
        #[arg(long)]
        content_encoding: Option<String>,
        /// The payload file.
        file: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Test builds only (`--features failpoints`): fail points configured by FAILPOINTS.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    match Cli::parse().command {
        Command::Serve { config } => serve(config).await,
        Command::Replay {
            config,
            partner,
            outcome,
            reason,
            from,
            to,
        } => {
            let filter = ReplayFilter {
                event_id: None,
                partner,
                outcome,
                reason,
                from,
                to,
                unmapped_location: None,
            };
            replay(config, filter).await
        }
        Command::Handler {
            command:
                HandlerCommand::Test {
                    config,
                    partner,
                    event_type,
                    content_type,
                    content_encoding,
                    file,
                },
        } => {
            let headers = [
                ("content-type", content_type),
                ("content-encoding", content_encoding),
            ];
            test_handler(config, &partner, &event_type, &headers, file)
        }
        Command::Backup { config, target } => backup(config, &target),
        Command::User { command } => {
            use diarysync::user_command::{PasswordSource, UserAction, run};
            let source = |stdin: bool| {
                if stdin {
                    PasswordSource::Stdin
                } else {
                    PasswordSource::Generate
                }
            };
            let (config, action) = match command {
                UserCommand::Add {
                    config,
                    email,
                    name,
                    role,
                    venues,
                    password_stdin,
                } => (
                    config,
                    UserAction::Add {
                        email,
                        name,
                        role,
                        venues,
                        password: source(password_stdin),
                    },
                ),
                UserCommand::List { config } => (config, UserAction::List),
                UserCommand::Disable { config, email } => (config, UserAction::Disable { email }),
                UserCommand::ResetPassword {
                    config,
                    email,
                    password_stdin,
                } => (
                    config,
                    UserAction::ResetPassword {
                        email,
                        password: source(password_stdin),
                    },
                ),
            };
            run(&config, action).await
        }
        Command::Simulate {
            days,
            seed,
            database_url,
            verbose,
            min_precision,
            min_recall,
        } => {
            let score = simulate(days, seed, database_url).await?;
            println!("{score}");
            let shown = if verbose { score.mistakes.len() } else { 10 };
            for mistake in score.mistakes.iter().take(shown) {
                println!("  {mistake}");
            }
            if score.precision() < min_precision || score.recall() < min_recall {
                anyhow::bail!(
                    "below the thresholds: precision {min_precision}, recall {min_recall}"
                );
            }
            Ok(())
        }
    }
}

/// Starts diarysync in this process on `database_url` (or a fresh SQLite file) with a
/// Lightspeed partner, plays `days` simulated days seeded with `seed` and scores them.
async fn simulate(
    days: u32,
    seed: u64,
    database_url: Option<String>,
) -> anyhow::Result<diarysync::simulate::Score> {
    let scratch = std::env::temp_dir().join(format!(
        "diarysync-simulate-{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    let database_url = match database_url {
        Some(url) => url,
        None => {
            std::fs::create_dir_all(&scratch).context("creating a scratch directory")?;
            format!("sqlite://{}", scratch.join("simulate.db").display())
        }
    };
    let admin_token: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(32)
        .collect();
    let partner_token: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(32)
        .collect();
    let toml = format!(
        "listen = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1\"\n\
         database_url = \"{database_url}\"\nadmin_token = \"{admin_token}\"\n\
         [[partners]]\nname = \"lightspeed\"\nhandler = \"lightspeed-kseries\"\n\
         rate_limit_per_second = 100000\nrate_limit_burst = 100000\n\
         [partners.auth]\nscheme = \"bearer\"\ntoken = \"{partner_token}\"\n"
    );
    let config = Config::from_toml(&toml).context("the simulation's configuration")?;
    let app = App::build(config).await.context("starting diarysync")?;
    let target = diarysync::simulate::Target {
        base: format!("http://127.0.0.1:{}", app.port()),
        admin_token,
        partner: "lightspeed".to_owned(),
        partner_token,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let generated: Vec<_> = (0..days)
        .map(|day| diarysync::simulate::generate(seed, day))
        .collect();
    let score = diarysync::simulate::run(&target, &generated).await;
    let _ = stop.send(());
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&scratch);
    score
}

fn backup(path: PathBuf, target: &std::path::Path) -> anyhow::Result<()> {
    let config =
        Config::load(&path).with_context(|| format!("configuration {}", path.display()))?;
    match diarysync::config::Backend::of_url(&config.database_url) {
        Some(diarysync::config::Backend::Sqlite) => {
            diarysync::store::sqlite::backup(&config.database_url, target)
                .with_context(|| format!("backing up to {}", target.display()))?;
            println!("backed up to {}", target.display());
            Ok(())
        }
        _ => anyhow::bail!(
            "diarysync backup copies a SQLite database; back up PostgreSQL with pg_dump or \
             its continuous archiving"
        ),
    }
}

async fn replay(path: PathBuf, filter: ReplayFilter) -> anyhow::Result<()> {
    // Counted, replayed and audited with the same end.
    let filter = filter.received_by(Utc::now());
    let config =
        Config::load(&path).with_context(|| format!("configuration {}", path.display()))?;
    let options = diarysync::store::OpenOptions {
        connect_for: config.database_connect_timeout,
        // A replay writes: on SQLite, never beside a running service's writer (use
        // POST /api/v1/events/replay there).
        exclusive: true,
        writers: config.database_writers,
        synchronous: config.sqlite_synchronous,
    };
    let store = diarysync::store::open_with(&config.database_url, options)
        .await
        .context("opening the store")?;
    let store = Arc::new(store);
    let gateway = Gateway::new(
        config,
        Arc::clone(&store) as Arc<dyn diarysync::store::Store>,
    );
    let total = gateway
        .count_replayable(&filter)
        .await
        .context("counting events")?;
    let bar = ProgressBar::new(u64::try_from(total).unwrap_or_default());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events, {per_sec}, {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let summary = gateway
        .replay(&filter, || bar.inc(1))
        .await
        .context("replaying")?;
    bar.finish();
    let after = serde_json::json!({
        "filter": {
            "partner": filter.partner, "outcome": filter.outcome, "reason": filter.reason,
            "from": filter.from, "to": filter.to,
        },
        "summary": summary,
    });
    use diarysync::store::operators::Operators as _;
    if let Err(error) = store
        .record_replay_audit(
            diarysync::domain::access::Actor::command_line(),
            after,
            summary.events.clone(),
        )
        .await
    {
        eprintln!("the replay was not recorded in the audit trail: {error}");
    }
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

fn test_handler(
    path: PathBuf,
    partner: &str,
    event_type: &str,
    given: &[(&'static str, Option<String>)],
    file: PathBuf,
) -> anyhow::Result<()> {
    let config =
        Config::load(&path).with_context(|| format!("configuration {}", path.display()))?;
    let partner_config = config
        .partners
        .iter()
        .find(|p| p.name == partner)
        .with_context(|| format!("partner {partner} is not in {}", path.display()))?;
    let spec = partner_config.handler.clone();
    let raw = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let mut headers = http::HeaderMap::new();
    for (name, value) in given {
        if let Some(value) = value {
            headers.insert(*name, value.parse().context("a header value")?);
        }
    }
    // Decoded as a delivery would be: compression, charset, byte-order marks.
    let policy = diarysync::partners::decode::BodyPolicy {
        max_bytes: config.max_body_bytes,
        undeclared: partner_config.undeclared_charset,
    };
    let body = diarysync::partners::decode::decode(&raw, &headers, policy)
        .context("decoding the payload")?;
    let (mapped, version) = spec.build().map_versioned(Delivery {
        event_type,
        headers: &headers,
        query: None,
        body: &body,
    });
    println!(
        "handler: {} {}",
        spec.name(),
        version.as_deref().unwrap_or("")
    );
    println!("{mapped:#?}");
    Ok(())
}

async fn serve(path: PathBuf) -> anyhow::Result<()> {
    let config =
        Config::load(&path).with_context(|| format!("configuration {}", path.display()))?;
    diarysync::telemetry::init(config.log_format);
    let listen = config.listen;
    let app = App::build(config).await.context("starting diarysync")?;
    tracing::info!(%listen, "diarysync listening");
    app.run_until_stopped(shutdown_signal())
        .await
        .context("serving")
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
